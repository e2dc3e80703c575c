"""The golden specs: configs/vertex.yaml compiled for Vertex and for Kubeflow Pipelines,
with its Beam steps on Dataflow."""

import json
import os
import re

from pipeline.beam_args import dataflow_args
from pipeline.config import load_config
from pipeline.kubeflow import compile_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))
# What each platform is given: Vertex's PipelineJob; Kubeflow's package as the run request
# carries it, its pipeline spec and its Kubernetes platform spec.
GOLDEN_PATHS = {
    "vertex": os.path.join(GOLDEN_DIR, "vertex_pipeline.json"),
    "kubeflow": os.path.join(GOLDEN_DIR, "kubeflow_pipeline.json"),
}
VERTEX_CONFIG = os.path.join(REPO_ROOT, "configs", "vertex.yaml")
# The code digests change with every edit of the code; the golden file keeps their place:
# the Trainer's inside its custom_config string, the Evaluator's as its own parameter.
_DIGEST = re.compile(r'(\\"code_digest\\": \\")[0-9a-f]{16}')
_DIGEST_PARAMETER = re.compile(r'("code_digest": \{[^}]*?")[0-9a-f]{16}"')


def normalized(job: dict) -> dict:
    text = _DIGEST.sub(r"\1<digest>", json.dumps(job, sort_keys=True))
    return json.loads(_DIGEST_PARAMETER.sub(r'\1<digest>"', text))


def golden(orchestrator: str) -> dict:
    """Vertex's PipelineJob, or Kubeflow's {"pipeline_spec", "platform_spec"} (kfp.Client's run body)."""
    cfg = load_config(VERTEX_CONFIG)
    documents = compile_pipeline(cfg, dataflow_args(cfg), orchestrator)
    if orchestrator == "vertex":
        (job,) = documents
        return normalized(job)
    pipeline_spec, platform_spec = documents
    return normalized({"pipeline_spec": pipeline_spec, "platform_spec": platform_spec})
