"""Serving the trained model: `python -m pipeline.generate`, the registered pyfunc, and a
real `mlflow models serve` answering on 127.0.0.1."""

import json
import os
import re
import subprocess
import sys
import urllib.request

import keras
import mlflow
import pytest

from components.minigpt.model import GPTConfig, build_model
from components.serving import model_bundle
from components.tracking import text_model
from pipeline import generate
from pipeline.config import EvalConfig
from tests.conftest import REPO_ROOT, free_port, wait_for_http

VOCAB = ["[PAD]", "[UNK]", "[BOS]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]


def _export_bundle(root, seq_len: int) -> str:
    """A small model bundle as the Trainer writes it, with a `seq_len` position embedding."""
    vocab_path = root / "vocab.txt"
    vocab_path.write_text("\n".join(VOCAB) + "\n")
    gpt = GPTConfig(vocabulary_size=len(VOCAB), seq_len=seq_len, embed_dim=16, ff_dim=16, num_heads=2, num_layers=1)
    keras.utils.set_random_seed(0)
    model_bundle.export(
        str(root / "serving"), build_model(gpt), model_bundle.Manifest(gpt, True, "run", "p", {}), str(vocab_path)
    )
    return str(root / "serving")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _export_bundle(tmp_path_factory.mktemp("bundle"), seq_len=96)


# Library output the command hides as pipeline/run.py does: TensorFlow's retracing warning
# (one decode function per decoder, on purpose), XLA's CUDA factory lines, Keras' masking
# warning, Google's FutureWarning.
NOISE = ("triggered tf.function retracing", "Unable to register", "does not support masking", "FutureWarning")
QUIETING = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", "MLFLOW_LOGGING_LEVEL")  # unset: the command must set them


def test_generate_prints_every_decoder_with_what_its_speed_includes_and_no_library_noise(bundle, tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in QUIETING} | {"PYTHONPATH": REPO_ROOT}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.generate", "--model", bundle, "--prompt", "the cat", "--decoder", "all"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(EvalConfig().decoders)
    assert all(
        re.search(r"\(compile \+ first call [\d.]+ s; then [\d,]+ tokens/s, median of 3 calls\): the cat", line)
        for line in lines
    )
    assert not [noise for noise in NOISE if noise in out.stdout + out.stderr]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "/nowhere"], "--model /nowhere: FileNotFoundError"),
        (["--decoder", "nucleus"], "--decoder nucleus: not one of greedy, beam"),
        (["--num-tokens", "200"], "--num-tokens 200: [BOS] + 200 tokens do not fit this model's seq_len 96"),
        (["--num-tokens", "0"], "--num-tokens 0: [BOS] + 0 tokens do not fit"),
    ],
)
def test_generate_errors_are_one_line(bundle, argv, message, capsys):
    argv = argv if argv[0] == "--model" else ["--model", bundle, *argv]
    assert generate.main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_model_with_a_shorter_window_than_the_default_generation_fills_its_window(tmp_path, capsys):
    seq_len = EvalConfig().num_tokens_to_generate // 2
    short = _export_bundle(tmp_path, seq_len=seq_len)
    assert generate.load(short, "sqlite:///unused.db").num_tokens == seq_len - 1  # [BOS] + the rest
    assert generate.main(["--model", short, "--decoder", "greedy", "--prompt", "the cat"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("greedy (compile + first call") and "calls): the cat" in line


SAVED_MODEL_SIDE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops the graph uses)
served = tf.saved_model.load(sys.argv[1])
texts = served.generate(tf.constant(json.loads(sys.argv[2]))).numpy()
ours = [name for name in sys.modules if name.split(".")[0] in ("keras_hub", "components", "mlflow")]
print(json.dumps({"texts": [t.decode() for t in texts], "imported": ours}))
"""


def test_the_saved_model_generates_text_in_plain_tensorflow(bundle, tmp_path):
    prompts = ["the cat sat", "a dog ran on the mat . the cat sat on the mat and ran"]
    out = subprocess.run(
        [sys.executable, "-c", SAVED_MODEL_SIDE, bundle, json.dumps(prompts)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    assert served["imported"] == []  # neither Keras Hub nor this project's code
    # The same text as the Python path with the same rules and decoder (greedy).
    settings = text_model.decoding_settings({"greedy": {}}, "greedy", 80, seed=0)
    expected, _ = text_model.MiniGPTText().load(bundle, settings).generate(prompts)
    assert served["texts"] == expected and served["texts"][0].startswith("the cat sat")


@pytest.mark.slow
def test_the_registered_model_answers_through_mlflow_models_serve(bundle, tmp_path, capsys):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    decoders = {"greedy": {}, "top_k": {"k": 3}}
    with mlflow.start_run():
        version = text_model.log_and_register(bundle, decoders, "top_k", num_tokens=12, seed=1)
    assert version == "1"
    # The generate command reads it from the registry too.
    argv = ["--model", "models:/minigpt/latest", "--tracking-uri", tracking_uri, "--prompt", "a dog"]
    assert generate.main(argv) == 0
    assert "top_k" in capsys.readouterr().out

    port = free_port()
    # As a user runs it from the activated venv: `mlflow` starts `uvicorn` from PATH.
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    mlflow_cli = os.path.join(venv_bin, "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", "models:/minigpt/latest", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"),
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/ping", server, tmp_path / "serve.log")
        request = {"inputs": ["the cat sat", "a dog"], "params": {"decoder": "greedy"}}
        answer = urllib.request.urlopen(
            urllib.request.Request(
                url + "/invocations", json.dumps(request).encode(), {"Content-Type": "application/json"}
            ),
            timeout=120,
        )
        predictions = json.loads(answer.read())["predictions"]
        assert [p.split()[:2] for p in predictions] == [["the", "cat"], ["a", "dog"]]
    finally:
        server.terminate()
        server.wait(timeout=30)
