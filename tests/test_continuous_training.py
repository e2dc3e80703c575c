"""A schedule's story, run as a user runs it, in one output folder: new spans, a bad
span stopped before training, a worse model kept from serving, a better one promoted.

Each run is `pipeline/run.py` on the tiny config over a corpus laid out in TFX spans
(`span-{SPAN}/train.txt`), keeping the champion's vocabulary and starting from its
weights, as configs/vertex.yaml does.
"""

import os
import shutil

import pytest
from mlflow import MlflowClient

from components.tracking.text_model import CHAMPION_ALIAS, REGISTERED_MODEL
from pipeline.run_summary import latest_run
from tests.conftest import TINY_CORPUS, run_pipeline

pytestmark = pytest.mark.slow

SPANS = [
    "data.train_file=span-{SPAN}/train.txt",
    "data.eval_file=span-{SPAN}/valid.txt",
    "data.test_file=span-{SPAN}/test.txt",
    "vocab.source=champion",
    "train.warm_start=champion",
]


def _lines(name):
    with open(os.path.join(TINY_CORPUS, name), "rb") as f:
        return f.read().splitlines(keepends=True)


def _write_span(books, span, train, valid=None):
    folder = books / f"span-{span}"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_bytes(b"".join(train))
    (folder / "valid.txt").write_bytes(b"".join(valid or _lines("valid.txt")))
    (folder / "test.txt").write_bytes(b"".join(_lines("test.txt")))


def _run(out, books, *overrides):
    result = run_pipeline(out, f"data.corpus={books}", *SPANS, *overrides)
    summary = latest_run(str(out / "metadata.sqlite"))
    return result, summary


def _model_line(result):
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Model:")]
    return line.split(":", 1)[1].strip()


def test_a_schedule_blesses_only_better_models_on_good_new_data(tmp_path):
    out, books = tmp_path / "out", tmp_path / "books"
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    train = _lines("train.txt")
    first_half, second_half = train[: len(train) // 2], train[len(train) // 2 :]
    pushed = out / "pipeline_root" / "serving"

    # 1. The first span: no champion yet, so the model is blessed, pushed, the champion.
    _write_span(books, 1, first_half)
    result, summary = _run(out, books)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _model_line(result).startswith(f"blessed, pushed as version 1 to {pushed}")
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 1
    (first_push,) = os.listdir(pushed)

    # 2. Nothing new: every step is served from the cache.
    result, summary = _run(out, books)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(summary.states.values()) == {"CACHED"}, summary.states

    # 3. A span whose eval paragraphs are also in its train split stops before training.
    valid = _lines("valid.txt")
    _write_span(books, 2, first_half + valid[:10], valid)
    result, summary = _run(out, books)
    assert result.returncode != 0
    assert "Trainer" not in summary.states or summary.states["Trainer"] != "COMPLETE"
    message = [line for line in result.stderr.splitlines() if "leak" in line.lower() or "shared" in line.lower()]
    assert message, result.stderr[-3000:]
    shutil.rmtree(books / "span-2")  # the bad drop is withdrawn

    # 4. A deliberately worse model (one short epoch at a tiny rate, from scratch) is
    # registered but not blessed: the champion and the pushed folder stay as they were.
    worse = ("train.epochs=1", "train.learning_rate=0.00001", "train.warm_start=none")
    result, summary = _run(out, books, *worse)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _model_line(result).startswith("not blessed: test perplexity")
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 1
    assert os.listdir(pushed) == [first_push]
    assert {v.version for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")} == {1, 2}

    # 5. New good data, warm-started from the champion's weights: better, so it is
    # blessed, pushed, and becomes the champion.
    _write_span(books, 3, second_half)
    result, summary = _run(out, books)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _model_line(result).startswith(f"blessed, pushed as version 3 to {pushed}")
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 3
    assert len(os.listdir(pushed)) == 2
    run = client.get_run(client.get_model_version(REGISTERED_MODEL, "3").run_id)
    assert run.data.tags["warm_start"] == "from the champion's weights (models:/minigpt/1)"
    assert run.data.params["train.warm_started_from"] == "models:/minigpt/1"
