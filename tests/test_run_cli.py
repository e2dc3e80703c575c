"""`pipeline/run.py` refuses bad configs and bad inputs before any work, in one line."""

import time

import pytest

from pipeline import run
from tests.conftest import TINY_CONFIG, free_port


def _main(capsys, *overrides):
    args = ["--config", TINY_CONFIG]
    for item in overrides:
        args += ["--set", item]
    code = run.main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=-1", "config error: train.batch_size: must be positive, got -1"),
        ("vocab.vocabulary_size=2", "config error: vocab.vocabulary_size: must be larger than the 3 reserved tokens"),
        ("eval.decoders={beam_search: {}}", "config error: eval.decoders.beam_search: unknown decoder"),
        ("model.no_such_key=1", "config error: model.no_such_key: unknown key"),
    ],
)
def test_config_errors_are_one_line(capsys, tmp_path, override, message):
    code, err = _main(capsys, f"output_dir={tmp_path}", override)
    assert code == 2
    assert err.startswith("error: " + message)
    assert len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir()), "nothing may be written before validation passes"


def test_missing_corpus_is_one_line(capsys, tmp_path):
    code, err = _main(capsys, f"output_dir={tmp_path}", f"data.corpus={tmp_path}/nowhere")
    assert code == 1
    assert err.startswith(f"error: data.corpus: {tmp_path}/nowhere is not a directory; point it at a folder")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_missing_or_empty_split_file_is_one_line(capsys, tmp_path, tiny_corpus, broken):
    if broken == "missing":
        (tiny_corpus / "valid.txt").unlink()
    else:
        (tiny_corpus / "valid.txt").write_text("")
    code, err = _main(capsys, f"output_dir={tmp_path / 'out'}", f"data.corpus={tiny_corpus}")
    assert code == 1
    assert err.startswith(f"error: data.eval_file: split file {tiny_corpus}/valid.txt ")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_tracking_server_that_is_down_is_one_line_in_seconds_before_any_work(capsys, tmp_path):
    port = free_port()  # nobody listens there
    start = time.time()
    code, err = _main(capsys, f"output_dir={tmp_path}", f"mlflow.tracking_uri=http://127.0.0.1:{port}")
    assert code == 1 and time.time() - start < 15
    assert err.startswith(
        f"error: config error: mlflow.tracking_uri: no MLflow tracking server answers at http://127.0.0.1:{port}"
    )
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing started: no MLMD store, no artifacts
