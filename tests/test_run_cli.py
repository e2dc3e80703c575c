"""`pipeline/run.py` refuses bad configs and bad inputs before any work, in one line."""

import errno
import os
import resource
import subprocess
import sys
import time

import pytest

from pipeline import local_run, run
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


def test_an_output_dir_that_cannot_be_written_is_one_line(capsys):
    code, err = _main(capsys, "output_dir=/sys/minigpt-out")  # read-only even for root
    assert code == 1
    assert err == (
        "error: output_dir /sys/minigpt-out cannot be written (Operation not permitted); "
        "point it at a writable folder with --set output_dir=..."
    )


@pytest.mark.parametrize(
    "error, problem",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/out/x.gz"), "No space left on device writing /out/x.gz"),
        (OSError(errno.EFBIG, "File too large", "/out/big"), "File too large writing /out/big"),
        (RuntimeError("(sqlite3.OperationalError) database or disk is full"), "disk full writing a SQLite store"),
    ],
)
def test_a_full_disk_deep_inside_a_component_is_one_line(capsys, monkeypatch, tmp_path, error, problem):
    def fail(cfg, runner):
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Execution 5 failed") from inner  # as TFX wraps it

    monkeypatch.setattr(local_run, "run_locally", fail)
    code, err = _main(capsys, f"output_dir={tmp_path}")
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {problem}") and "the same command resumes" in err


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), where this machine lets us mount one."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_mid_run_is_one_line_without_traceback(tiny_disk):
    cmd = [sys.executable, run.__file__, "--config", TINY_CONFIG, "--set", f"output_dir={tiny_disk}/out"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # where the disk fills first may vary
    assert last.startswith("error: ") and "free space, or point output_dir and pipeline_root" in last


def _limit_file_size(limit_bytes: int):
    """A `preexec_fn` that caps the size of every file the child writes (`ulimit -f`)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_naming_it_and_the_rerun_resumes(tmp_path):
    """RLIMIT_FSIZE for real, on any machine: writes past it fail with EFBIG (Python
    ignores SIGXFSZ), which SQLite reports as a "disk I/O error"."""
    cmd = [sys.executable, run.__file__, "--config", TINY_CONFIG, "--set", f"output_dir={tmp_path}/out"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    limited = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=600, preexec_fn=_limit_file_size(256 * 1024)
    )
    assert limited.returncode == 1
    assert "Traceback" not in limited.stderr
    last = limited.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "raise this shell's file size limit (`ulimit -f`, now 256 KiB)" in last
    # Without the limit, the same command finishes: nothing the failed run wrote is corrupt.
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Trainer COMPLETE" in resumed.stdout and "Evaluator COMPLETE" in resumed.stdout
