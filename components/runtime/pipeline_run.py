"""Which pipeline, and which run of it, an executor runs in, under every orchestrator.

The Trainer and the Evaluator need both to find the pipeline run's MLflow run. TFX's
local runner puts them in the executor's context. TFX's Kubeflow/Vertex container
entrypoint (`kubeflow_v2_run_executor`) gives a context with neither: only the flags
after its own (`extra_flags`). So a compiled spec passes the name as such a flag, and
the run id as Vertex's `{{$.pipeline_job_uuid}}` in another (`pipeline_flags`), which Vertex
fills in per pipeline job. Kubeflow Pipelines' launcher fills in no such placeholder; its
API server labels every pod of a run with the run's id (`pipeline/runid`), which the
Kubernetes platform spec hands the container as an environment variable
(`KUBEFLOW_RUN_ID_ENV`, through the downward API: `fieldPathAsEnv`). Being in the
container's arguments or environment rather than in the task's inputs, the run id stays
out of the task's cache key.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from tfx.dsl.components.base import base_executor

PIPELINE_NAME_FLAG = "--minigpt_pipeline_name"
PIPELINE_RUN_ID_FLAG = "--minigpt_pipeline_run_id"
# What Vertex AI Pipelines substitutes with the pipeline job's id in a container argument.
VERTEX_JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
# On Kubeflow Pipelines: the environment variable that holds the run id, and the pod field
# it is read from.
KUBEFLOW_RUN_ID_ENV = "MINIGPT_PIPELINE_RUN_ID"
KUBEFLOW_RUN_ID_FIELD = "metadata.labels['pipeline/runid']"


def pipeline_flags(pipeline_name: str, kubeflow: bool) -> List[str]:
    """The container arguments that tell an executor its pipeline (and on Vertex its run)."""
    name = f"{PIPELINE_NAME_FLAG}={pipeline_name}"
    return [name] if kubeflow else [name, f"{PIPELINE_RUN_ID_FLAG}={VERTEX_JOB_ID_PLACEHOLDER}"]


def pipeline_run(context: base_executor.BaseExecutor.Context) -> Tuple[str, str]:
    """(pipeline name, pipeline run id): the context's, else the `pipeline_flags` given and
    the run id from Vertex's flag or Kubeflow's environment variable.

    Raises:
      RuntimeError: neither holds them, or the run id placeholder was not filled in (a
        platform other than Vertex ran the spec).
    """
    if context.pipeline_info is not None and context.pipeline_run_id:
        return context.pipeline_info.id, context.pipeline_run_id
    flags = dict(flag.split("=", 1) for flag in context.extra_flags or () if "=" in flag)
    name = flags.get(PIPELINE_NAME_FLAG)
    run_id = flags.get(PIPELINE_RUN_ID_FLAG) or os.environ.get(KUBEFLOW_RUN_ID_ENV)
    if not name or not run_id or "{{" in run_id:
        raise RuntimeError(
            f"this executor's orchestrator gave no pipeline run id (context: none; {PIPELINE_RUN_ID_FLAG} or "
            f"${KUBEFLOW_RUN_ID_ENV}: {run_id!r}): the MLflow run of this pipeline run cannot be found"
        )
    return name, run_id
