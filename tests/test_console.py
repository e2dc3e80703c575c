"""What a run prints: progress lines with wall times, known noise hidden unless -v."""

import logging
import os
import types

import pytest

from pipeline import console


def _record(msg, *args, name="absl", level=logging.INFO):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_component_progress_lines_carry_the_wall_time(monkeypatch):
    progress = console._ComponentProgress()
    clock = iter([100.0, 102.5])
    monkeypatch.setattr(console, "time", types.SimpleNamespace(time=lambda: next(clock)))
    start = _record("Component %s is running.", "VocabGen")
    assert progress.filter(start) and start.getMessage() == "VocabGen: started"
    end = _record("Component VocabGen is finished.")
    assert progress.filter(end) and end.getMessage() == "VocabGen: finished in 2.5 s"
    assert not progress.filter(_record("Execution 14 succeeded."))
    assert not progress.filter(_record("pipeline_node { node_info { ... } }"))
    assert progress.filter(_record("anything", level=logging.WARNING))


@pytest.mark.parametrize(
    "msg, args, shown",
    [
        ("ArtifactQuery.property_predicate is not supported.", (), False),
        (("No iterator is returned by the process method in %s.", "X"), (), False),  # Beam logs a tuple
        ("Examples artifact does not have %s custom property.", ("payload_format",), False),
        ("5 out of the last 9 calls to <f> triggered tf.function retracing.", (), False),
        ("Split train: 160 lines kept", (), True),
        ("A real problem", (), True),
    ],
)
def test_known_noise_is_dropped_and_the_rest_is_shown(msg, args, shown):
    assert console._KnownNoise().filter(_record(msg, *args, level=logging.WARNING)) is shown


@pytest.mark.parametrize("verbose, level", [(False, "3"), (True, "0")])
def test_the_environment_reaches_tensorflow_and_beam_workers(monkeypatch, verbose, level):
    for name in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(console.warnings, "filterwarnings", lambda *a, **k: None)
    console.quiet_environment(verbose)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level
    assert ("PYTHONWARNINGS" in os.environ) is not verbose
    assert ("MLFLOW_LOGGING_LEVEL" in os.environ) is not verbose
