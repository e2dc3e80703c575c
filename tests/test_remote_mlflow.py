"""The tiny pipeline reporting to a real MLflow tracking server over HTTP.

What a shared server changes: every component (here, each in TFX's process and Beam's
worker processes) reaches MLflow by URL, and artifacts go through the server's proxy to
its own artifact root rather than to a folder of the client.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from components.tracking.buffered_run import BufferedRun
from components.tracking.mlflow_runs import PipelineRun, artifact_paths, tracking_environment
from components.trainer.trainer_module import UNLOGGED_FILE
from pipeline import run
from pipeline.run_summary import latest_run
from tests.conftest import TINY_CONFIG, mlflow_runs, run_pipeline, start_server

pytestmark = pytest.mark.slow
# Enough tiny epochs (~0.3 s each) for the server to die mid-training.
EPOCHS = 30


def test_the_pipeline_logs_params_curves_samples_and_model_to_a_tracking_server(mlflow_server, tmp_path):
    url, server_root = mlflow_server
    out = tmp_path / "out"
    result = run_pipeline(out, f"mlflow.tracking_uri={url}")
    assert result.returncode == 0, result.stderr[-3000:]

    client, runs = mlflow_runs(out, url)
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert run.data.params["mlflow.tracking_uri"] == url and run.data.params["train.batch_size"] == "16"
    epochs = int(run.data.params["train.epochs"])
    for name in ("train/loss", "val/loss", "val/perplexity"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == list(range(1, epochs + 1))
    assert {"eval.perplexity", "test.perplexity"} <= set(run.data.metrics)
    assert sorted(d.tags[0].value for d in run.inputs.dataset_inputs) == ["eval", "test", "train"]
    paths = set(artifact_paths(client, run.info.run_id))
    assert {f"samples/{name}.txt" for name in ("greedy", "beam", "random", "top_k", "top_p", "contrastive")} <= paths
    assert {"model/minigpt.keras", "model/saved_model.pb", "vocabulary/vocab.txt", "samples/epoch_001.txt"} <= paths
    # The bytes live under the server's artifact root, and none in the client's folders.
    stored = [os.path.join(d, f) for d, _, files in os.walk(server_root / "artifacts") for f in files]
    assert any(p.endswith("greedy.txt") for p in stored)
    assert not (out / "mlartifacts").exists() and not (out / "mlflow.db").exists()


def test_a_tracking_server_killed_mid_training_loses_no_training(mlflow_server, tmp_path):
    """The server dies after the first epoch is logged: training goes on to the end and
    the model is exported; the Evaluator, which needs the server, fails in one line; with
    the server back, the same command finishes without training again."""
    url, server_root = mlflow_server
    out = tmp_path / "out"
    cmd = [sys.executable, run.__file__, "--config", TINY_CONFIG, "--set", f"output_dir={out}"]
    for override in (f"mlflow.tracking_uri={url}", f"train.epochs={EPOCHS}", "train.steps_per_epoch=null"):
        cmd += ["--set", override]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(tmp_path / "stderr.txt", "w") as stderr:
        pipeline = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env, text=True)
        first_epoch = _wait_for_metric(url, "train/loss", pipeline)
        port = int(url.rsplit(":", 1)[1])
        os.kill(_server_pid(port), signal.SIGKILL)
        assert pipeline.wait(timeout=600) == 1
    log = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in log
    assert f"MLflow at {url} stopped answering" in log  # once, when it went away
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"error: the MLflow tracking server {url} stopped answering")
    summary = latest_run(str(out / "metadata.sqlite"))
    assert summary.states["Trainer"] == "COMPLETE" and summary.states["Evaluator"] == "FAILED"
    # Every epoch trained; what the server missed is listed beside the exported model.
    (model_dir,) = (out / "pipeline_root" / "Trainer" / "model").iterdir()
    assert (model_dir / "Format-Serving" / "saved_model.pb").exists()
    (model_run_dir,) = (out / "pipeline_root" / "Trainer" / "model_run").iterdir()
    unlogged = json.loads((model_run_dir / UNLOGGED_FILE).read_text())
    steps = [entry["args"][1] for entry in unlogged if entry["call"] == "log_metrics" and entry["args"][1] > 0]
    assert steps[-1] == EPOCHS and first_epoch.step not in steps
    assert {"log_artifact", "log_keras_model"} <= {entry["call"] for entry in unlogged}

    server = start_server(port, server_root)
    try:
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    states = latest_run(str(out / "metadata.sqlite")).states
    assert states["Trainer"] == "CACHED" and states["Evaluator"] == "COMPLETE"


def _wait_for_metric(url: str, name: str, pipeline: subprocess.Popen, timeout_s: float = 300):
    """The first value of metric `name` that any run on the server logs."""
    client, deadline = MlflowClient(url), time.time() + timeout_s
    while time.time() < deadline and pipeline.poll() is None:
        for experiment in client.search_experiments():
            for found in client.search_runs([experiment.experiment_id]):
                history = client.get_metric_history(found.info.run_id, name)
                if history:
                    return history[0]
        time.sleep(0.2)
    raise AssertionError(f"no {name} logged within {timeout_s} s (pipeline exit code {pipeline.poll()})")


def _server_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:`port` (the server's worker, not its launcher)."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return int(re.search(r"pid=(\d+)", out).group(1))


def test_what_is_logged_while_the_server_is_down_is_replayed_in_order_when_it_is_back(mlflow_server):
    url, root = mlflow_server
    client = MlflowClient(url)
    experiment_id = client.create_experiment("outage")
    run_id = client.create_run(experiment_id).info.run_id
    tracked = BufferedRun(PipelineRun(client, run_id), url)
    assert tracked.log("log_metrics", {"train/loss": 3.0}, 1)
    port = int(url.rsplit(":", 1)[1])
    os.kill(_server_pid(port), signal.SIGKILL)
    with tracking_environment(url, "outage"):  # MLflow's retries bounded, as in the pipeline
        assert not tracked.log("log_metrics", {"train/loss": 2.0}, 2)
        start = time.time()
        assert not tracked.log("log_text", "epoch 3\n", "samples/epoch_003.txt")  # one quick probe, no retries
        assert time.time() - start < 3
        assert [method for method, _ in tracked.pending] == ["log_metrics", "log_text"]
        server = start_server(port, root)
        try:
            assert tracked.log("log_metrics", {"train/loss": 1.0}, 3)
            history = client.get_metric_history(run_id, "train/loss")
            assert [(m.step, m.value) for m in history] == [(1, 3.0), (2, 2.0), (3, 1.0)]
            assert artifact_paths(client, run_id, "samples") == ["samples/epoch_003.txt"]
        finally:
            server.terminate()
            server.wait(timeout=30)
