"""Shared fixtures: the tiny corpus, a scratch output directory and tiny configs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Optional

import mlflow
import pytest
from mlflow.tracking import MlflowClient

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CORPUS = os.path.join(REPO_ROOT, "tests", "data", "tiny_corpus")
TINY_CONFIG = os.path.join(REPO_ROOT, "configs", "tiny.yaml")


@pytest.fixture(autouse=True)
def unset_mlflow_tracking_uri():
    """Each test's MLflow clients find the store it names: a tracking URI one test set with
    `mlflow.set_tracking_uri` would otherwise outrank the next one's $MLFLOW_TRACKING_URI."""
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture
def tiny_corpus(tmp_path):
    """A writable copy of the tiny corpus (train.txt, valid.txt)."""
    path = tmp_path / "corpus"
    shutil.copytree(TINY_CORPUS, path)
    return path


def write_examples(path, lines) -> None:
    """A gzip TFRecord file of tf.Example{text}, as TextExampleGen writes them."""
    from components.data.formats import text_to_example

    _write_records(path, (text_to_example(line) for line in lines))


def write_token_examples(path, rows) -> None:
    """A gzip TFRecord file of tf.Example{ids}, as Tokenize writes them."""
    from components.data.formats import ids_to_example

    _write_records(path, (ids_to_example(ids) for ids in rows))


def tokenize(lines, vocab, seq_len):
    """Each line's WordPiece ids truncated to seq_len, without padding (what Tokenize writes)."""
    import keras_hub

    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocab, lowercase=True)
    return [ids[:seq_len] for ids in tokenizer(lines)]


def _write_records(path, examples) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for example in examples:
            writer.write(example.SerializeToString())


def read_long_lines(path, min_len: int = 450):
    """Lines longer than min_len bytes, as bytes, in file order (the reference's filter)."""
    with open(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f if len(line.rstrip(b"\n")) > min_len]


def run_pipeline(output_dir, *overrides, cwd=REPO_ROOT, tmp_dir=None):
    """`python pipeline/run.py` as a user types it (from `cwd`, by default the checkout;
    with `$TMPDIR` set to `tmp_dir` if given)."""
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "pipeline", "run.py"),
        "--runner=DirectRunner",
        "--config",
        TINY_CONFIG,
        "--set",
        f"output_dir={output_dir}",
    ]
    for item in overrides:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


def mlflow_runs(output_dir, tracking_uri=None):
    client = MlflowClient(tracking_uri or f"sqlite:///{output_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("minigpt")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]) if experiment else []
    return client, runs


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log_path, timeout_s: float = 180) -> None:
    """Returns once `url` answers; raises with the end of the server's log if `process`
    exits first or `timeout_s` passes."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{url} did not come up:\n" + open(log_path).read()[-3000:])
            time.sleep(0.5)


def start_server(port: int, root) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` with its SQLite backend and artifact root in `root`."""
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "a"),
    )  # fmt: skip
    wait_for_http(f"http://127.0.0.1:{port}/health", server, root / "server.log")
    return server


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server: (its URL, its folder)."""
    port, root = free_port(), tmp_path / "server"
    root.mkdir()
    server = start_server(port, root)
    yield f"http://127.0.0.1:{port}", root
    server.terminate()
    server.wait(timeout=30)


def register_champion(tracking_uri, folder, vocab, model=None, gpt=None, statistics_uri=None) -> str:
    """Exports `model` (default: a fresh tiny one over `vocab`) as a bundle under `folder`,
    logs and registers it as the Evaluator does, and makes it MLflow's champion (with the
    Pusher's statistics tag when given); returns its version."""
    from components.minigpt.model import GPTConfig, build_model  # pylint: disable=import-outside-toplevel
    from components.serving import model_bundle  # pylint: disable=import-outside-toplevel
    from components.tracking import text_model  # pylint: disable=import-outside-toplevel
    from components.tracking.champion import STATISTICS_URI_TAG  # pylint: disable=import-outside-toplevel
    from components.tracking.mlflow_runs import default_artifact_location  # pylint: disable=import-outside-toplevel

    gpt = gpt or GPTConfig(vocabulary_size=len(vocab), seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
    model = model or build_model(gpt)
    os.makedirs(folder, exist_ok=True)
    vocab_path = os.path.join(folder, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name("champions")
    location = default_artifact_location(tracking_uri)  # beside the store, not in ./mlruns
    experiment_id = found.experiment_id if found else client.create_experiment("champions", location)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        params = {"vocab.vocabulary_size": 5000}
        manifest = model_bundle.Manifest(gpt, True, run.info.run_id, "champion-pipeline-run", params)
        bundle = os.path.join(folder, "Format-Serving")
        model_bundle.export(bundle, model, manifest, vocab_path, generate_tokens=4)
        version = text_model.log_and_register(bundle, {"greedy": {}}, "greedy", 4, 42)
    client.set_registered_model_alias(text_model.REGISTERED_MODEL, text_model.CHAMPION_ALIAS, version)
    if statistics_uri:
        client.set_model_version_tag(text_model.REGISTERED_MODEL, version, STATISTICS_URI_TAG, statistics_uri)
    return version


def run_on_jax(script: str, *args: str, extra_env: Optional[dict] = None) -> str:
    """Runs `python -c script *args` on Keras' JAX backend (CPU) in a child process, from
    the repository root (a process has one Keras backend: the suite's is TensorFlow);
    fails the test with the child's stderr if it fails. Returns its stdout."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", **(extra_env or {})}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def last_json_line(stdout: str):
    """The JSON a child process printed last (what `run_on_jax` scripts report)."""
    return json.loads(stdout.strip().splitlines()[-1])
