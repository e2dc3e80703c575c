"""The tiny pipeline reporting to a real MLflow tracking server over HTTP.

What a shared server changes: every component (here, each in TFX's process and Beam's
worker processes) reaches MLflow by URL, and artifacts go through the server's proxy to
its own artifact root rather than to a folder of the client.
"""

import os
import subprocess
import sys

import pytest

from components.tracking import artifact_paths
from tests.conftest import free_port, mlflow_runs, run_pipeline, wait_for_http

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on 127.0.0.1 with its own SQLite backend and artifact root."""
    port, root = free_port(), tmp_path / "server"
    root.mkdir()
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health", server, root / "server.log")
    yield url, root
    server.terminate()
    server.wait(timeout=30)


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
    assert "eval.perplexity" in run.data.metrics
    assert sorted(d.tags[0].value for d in run.inputs.dataset_inputs) == ["eval", "train"]
    paths = set(artifact_paths(client, run.info.run_id))
    assert {f"samples/{name}.txt" for name in ("greedy", "beam", "random", "top_k", "top_p", "contrastive")} <= paths
    assert {"model/minigpt.keras", "model/saved_model.pb", "vocabulary/vocab.txt", "samples/epoch_001.txt"} <= paths
    # The bytes live under the server's artifact root, and none in the client's folders.
    stored = [os.path.join(d, f) for d, _, files in os.walk(server_root / "artifacts") for f in files]
    assert any(p.endswith("greedy.txt") for p in stored)
    assert not (out / "mlartifacts").exists() and not (out / "mlflow.db").exists()
