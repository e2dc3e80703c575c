"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines and submits it.

One compiled spec serves both platforms: TFX's `KubeflowV2DagRunner` turns the same
`create_pipeline` into a PipelineJob JSON whose tasks run the pipeline image. The
submission itself is the platform SDK's own call (`aiplatform.PipelineJob`,
`kfp.Client`); everything before it is checked here, offline, before any work.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional, Sequence

import yaml

from components.errors import ConfigError
from pipeline import image
from pipeline.config import EMBEDDED_CORPUS, PipelineConfig, is_uri

ORCHESTRATORS = ("local", "vertex", "kubeflow")
# MLflow stores every container can reach; a SQLite file or local folder cannot be.
REMOTE_TRACKING_SCHEMES = ("http", "https", "databricks")
# minute hour day-of-month month day-of-week, each in its range.
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def check_cron(cron: str) -> None:
    """A standard five-field cron expression (optionally `TZ=Area/City ` first)."""
    fields = re.sub(r"^(CRON_)?TZ=\S+\s+", "", cron.strip()).split()
    if len(fields) != len(_CRON_RANGES):
        raise ConfigError("--schedule", f"{cron!r} is not a five-field cron expression like '0 3 * * *'")
    for text, (low, high) in zip(fields, _CRON_RANGES):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            numbers = [int(n) for n in match.groups()[1:3] if n is not None] if match else None
            if not match or any(not low <= n <= high for n in numbers) or match.group(4) == "0":
                raise ConfigError("--schedule", f"{cron!r}: field {text!r} is not a cron field in {low}-{high}")


def check_orchestrator(
    cfg: PipelineConfig, orchestrator: str, host: Optional[str], schedule: Optional[str], compile_only: bool
) -> None:
    """Everything a Kubeflow/Vertex run needs, checked before compiling; one ConfigError."""
    cloud = cfg.cloud
    if schedule is not None:
        if compile_only:
            raise ConfigError("--schedule", "creates a recurring run: it cannot go with --compile-only")
        check_cron(schedule)
    if orchestrator == "vertex" and not compile_only:
        for flag, value in (("--project", cloud.project), ("--region", cloud.region)):
            if not value:
                raise ConfigError(flag, "is required to submit or schedule on Vertex AI Pipelines")
    if orchestrator == "kubeflow" and not compile_only and not host:
        raise ConfigError("--host", "is required to submit or schedule on Kubeflow Pipelines (its API URL)")
    if not cloud.image:
        raise ConfigError("--image", "is required: every task runs the pipeline image built from the Dockerfile")
    if not is_uri(cfg.resolved_pipeline_root):
        raise ConfigError(
            "--pipeline-root",
            f"must be a bucket URI such as gs://bucket/root for a {orchestrator} run "
            f"(tasks in other machines write the artifacts there), got {cfg.resolved_pipeline_root!r}",
        )
    if cfg.data.corpus != EMBEDDED_CORPUS and not cfg.data.corpus.startswith("gs://"):
        raise ConfigError(
            "data.corpus",
            f"must be 'embedded' or a gs:// folder for a {orchestrator} run (the tasks cannot see "
            f"this machine's files), got {cfg.data.corpus!r}",
        )
    scheme = cfg.resolved_tracking_uri().split(":", 1)[0]
    if scheme not in REMOTE_TRACKING_SCHEMES:
        raise ConfigError(
            "mlflow.tracking_uri",
            f"must be a tracking server every task can reach ({'/'.join(REMOTE_TRACKING_SCHEMES)}), "
            f"got a {scheme} store; set it in the config or MLFLOW_TRACKING_URI",
        )


def compile_pipeline_job(cfg: PipelineConfig, beam_pipeline_args: Sequence[str]) -> Dict[str, Any]:
    """The PipelineJob JSON (as a dict) for `cfg`, with tasks running `cfg.cloud.image`."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from components.tracking import tracking_variables
    from pipeline.dag import create_pipeline

    corpus_dir = image.EMBEDDED_CORPUS_DIR if cfg.data.corpus == EMBEDDED_CORPUS else cfg.data.corpus
    pipeline = create_pipeline(cfg, corpus_dir, beam_pipeline_args)
    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    trainer_resources = cfg.cloud.trainer
    for component in pipeline.components:
        if component.id == "Trainer" and not trainer_resources.vertex_training:
            spec = resources(cpu_limit=trainer_resources.cpu, memory_limit=trainer_resources.memory_gb)
            if trainer_resources.accelerator_type:
                spec.accelerator.type = trainer_resources.accelerator_type
                spec.accelerator.count = trainer_resources.accelerator_count
            component.with_platform_config(spec)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=cfg.cloud.image)
    )
    job = runner.run(pipeline, write_out=False)
    # Where and how the executors report to MLflow (components/tracking.py).
    variables = tracking_variables(cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name)
    environment = [{"name": name, "value": value} for name, value in variables.items()]
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["env"] = environment
    return job


def write_pipeline_job(job: Dict[str, Any], path: str, orchestrator: str) -> str:
    """Writes what the platform takes and returns `path`.

    Vertex takes the whole PipelineJob JSON; Kubeflow Pipelines takes its PipelineSpec,
    uploaded as YAML (the pipeline root is then given with the run). Keys are sorted: a
    stable file to diff and review.
    """
    document = job["pipelineSpec"] if orchestrator == "kubeflow" else job
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith((".yaml", ".yml")):
            yaml.safe_dump(document, f, sort_keys=True)
        else:
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
    return path


def submit_to_vertex(cfg: PipelineConfig, spec_path: str, schedule: Optional[str]) -> str:
    """Submits the compiled spec to Vertex AI Pipelines, or schedules it; returns its name."""
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name=cfg.pipeline_name,
        template_path=spec_path,
        pipeline_root=cfg.resolved_pipeline_root,
        enable_caching=True,
        project=cfg.cloud.project,
        location=cfg.cloud.region,
    )
    if schedule:
        return job.create_schedule(cron=schedule, display_name=f"{cfg.pipeline_name}-schedule").resource_name
    job.submit()
    return job.resource_name


def submit_to_kubeflow(cfg: PipelineConfig, spec_path: str, host: str, schedule: Optional[str]) -> str:
    """Submits the compiled spec to a Kubeflow Pipelines API, or schedules it; returns the id."""
    import kfp

    client = kfp.Client(host=host)
    if schedule:
        experiment = client.create_experiment(cfg.pipeline_name)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=f"{cfg.pipeline_name}-schedule",
            # KFP's scheduler takes a seconds field first.
            cron_expression="0 " + schedule,
            pipeline_package_path=spec_path,
            pipeline_root=cfg.resolved_pipeline_root,
            enable_caching=True,
        )
        return recurring.recurring_run_id
    result = client.create_run_from_pipeline_package(
        spec_path,
        experiment_name=cfg.pipeline_name,
        run_name=cfg.pipeline_name,
        pipeline_root=cfg.resolved_pipeline_root,
        enable_caching=True,
    )
    return result.run_id
