"""The golden spec: configs/vertex.yaml compiled for Vertex with its Beam steps on Dataflow."""

import json
import os
import re

from pipeline import image
from pipeline.beam_args import dataflow_args
from pipeline.config import load_config
from pipeline.kubeflow import compile_pipeline_job

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vertex_pipeline.json")
VERTEX_CONFIG = os.path.join(REPO_ROOT, "configs", "vertex.yaml")
# The training code's digest changes with every edit of it; the golden file keeps its place.
_DIGEST = re.compile(r'(\\"code_digest\\": \\")[0-9a-f]{16}')


def normalized(job: dict) -> dict:
    return json.loads(_DIGEST.sub(r"\1<digest>", json.dumps(job, sort_keys=True)))


def golden_job() -> dict:
    cfg = load_config(VERTEX_CONFIG)
    return normalized(compile_pipeline_job(cfg, dataflow_args(cfg, image.SETUP_FILE)))
