"""The compiled Vertex spec's tasks, run here in dependency order as their containers would.

`tests/kfp_launcher.py` stands in for the KFP v2 launcher on the tiny config and the
embedded corpus (a local pipeline root, a SQLite MLflow store), so the commands,
module paths, arguments and artifact handoffs in the spec are proven to run.

Reproduced faithfully:
- each executor's own `command` and `args` (TFX's `kubeflow_v2_run_executor` and, for
  TextExampleGen, its `preCacheCheck` driver), run as subprocesses with the placeholders
  substituted as the launcher does (`{{$}}`, artifact URIs, parameters, output files,
  and Vertex's `{{$.pipeline_job_uuid}}` / `{{$.pipeline_job_name}}`);
- the `ExecutorInput` of schema 2.0.0: the task's constants as `inputs.parameters`, the
  producers' artifacts (type, URI, name, metadata) as `inputs.artifacts`, an output URI
  per artifact and an `outputFile` in `<root>/<job>/<task>_<id>/`;
- the metadata an executor writes into its `ExecutorOutput` merged into its output
  artifacts before they go downstream (KFP's `mergeRuntimeArtifacts`), and the
  preCacheCheck's output read back by the executor from the same `outputFile`;
- the containers' `env` (MLflow's variables) over the surrounding environment.

Not reproduced:
- the image: this venv's python is its `python`, the checkout its WORKDIR /pipeline
  (paths under /pipeline in arguments and parameters are rewritten onto the checkout);
- caching against Vertex ML Metadata: every task runs, and the preCacheCheck's
  fingerprint is not compared with anything;
- buckets: artifact URIs are local folders, created before a task runs (a bucket has no
  folders to create), not gs:// paths or the `/gcs/` fuse mount;
- the Vertex custom training job that the Trainer submits with
  `cloud.trainer.vertex_training` (compiled off here), Dataflow (DirectRunner here),
  and the resources a task asks for.
"""

import json
import os

import pytest
from mlflow.tracking import MlflowClient

from components.tracking.mlflow_runs import PIPELINE_RUN_ID_TAG
from pipeline import image
from pipeline.beam_args import pipeline_beam_args
from pipeline.config import load_config
from pipeline.kubeflow import compile_pipeline
from tests.conftest import REPO_ROOT, TINY_CONFIG
from tests.kfp_launcher import Launcher, failed, task_order

# The data-flow tasks every compiled spec runs, in an order the DAG must allow.
CORE = ["TextExampleGen", "VocabGen", "DecoderCheck", "Tokenize", "Trainer", "Evaluator"]


def compile_tiny(output_dir) -> dict:
    """The tiny config compiled for Vertex as `--orchestrator=vertex --compile-only` would,
    on the embedded corpus (read from the image), with a local root and MLflow store."""
    cfg = load_config(
        TINY_CONFIG,
        [
            f"output_dir={output_dir}",
            "data.corpus=embedded",
            "beam.direct_running_mode=in_memory",
            f"mlflow.tracking_uri=sqlite:///{output_dir}/mlflow.db",
            "cloud.image=example.com/minigpt/pipeline:test",
        ],
    )
    (job,) = compile_pipeline(cfg, pipeline_beam_args(cfg, "DirectRunner", image.SETUP_FILE), "vertex")
    return job


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("vertex")
    job = compile_tiny(output_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    launcher = Launcher(job, str(output_dir / "pipeline_root"), REPO_ROOT, env)
    return output_dir, launcher, launcher.run()


@pytest.mark.slow
def test_every_task_of_the_compiled_spec_runs_and_hands_on_its_artifacts(launched):
    output_dir, launcher, runs = launched
    failure = failed(runs)
    assert failure is None, f"{failure.name} exited {failure.returncode}:\n{failure.log[-4000:]}"
    assert list(runs) == task_order(launcher.spec)
    assert [name for name in runs if name in CORE] == CORE
    # The embedded corpus was read where the image has it.
    assert runs["TextExampleGen"].executor_input["inputs"]["parameters"]["input_base"]["stringValue"] == os.path.join(
        REPO_ROOT, os.path.relpath(image.EMBEDDED_CORPUS_DIR, image.ROOT)
    )
    # What an executor recorded on its artifact reached the next one: Tokenize's counts,
    # through its executor output, in the Trainer's input...
    token_ids = runs["Tokenize"].executor_output["artifacts"]["token_ids"]["artifacts"][0]["metadata"]
    trainer_examples = runs["Trainer"].executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert token_ids["train_tokens"] > 0 and trainer_examples["metadata"] == token_ids
    # ...and the learned vocabulary size in DecoderCheck's, which checked the decoders against it.
    vocabulary = runs["DecoderCheck"].executor_input["inputs"]["artifacts"]["vocabulary"]["artifacts"][0]
    assert 0 < vocabulary["metadata"]["size"] <= 1000
    # The Evaluator scored the Trainer's model and wrote its evaluation.
    model = runs["Evaluator"].executor_input["inputs"]["artifacts"]["model"]["artifacts"][0]
    assert model["uri"] == launcher.outputs["Trainer"]["model"].uri
    with open(os.path.join(launcher.outputs["Evaluator"]["evaluation"].uri, "evaluation.json"), encoding="utf-8") as f:
        evaluation = json.load(f)
    assert evaluation["perplexity"]["test"]["tokens"] > 0
    # One MLflow run, found by Vertex's job id, which the Trainer and the Evaluator shared.
    client = MlflowClient(f"sqlite:///{output_dir}/mlflow.db")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("minigpt").experiment_id],
        filter_string=f"tags.`{PIPELINE_RUN_ID_TAG}` = '{launcher.job_uuid}'",
    )
    assert run.info.status == "FINISHED" and run.info.run_id == evaluation["mlflow_run_id"]
    assert "train/loss" in run.data.metrics and "test.perplexity" in run.data.metrics
