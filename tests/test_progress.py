"""Long Beam steps say how far they got, at most every ~10 s per worker."""

import logging
import types

import apache_beam as beam
from apache_beam.testing import test_pipeline

from components.runtime import progress
from components.text_example_gen import executor


def test_a_line_every_interval_with_the_running_total(monkeypatch, caplog):
    clock = iter([0.0, 4.0, 10.5, 12.0, 21.0])
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    caplog.set_level(logging.INFO, logger="components.runtime.progress")
    counter = progress.Progress("VocabGen", "lines pretokenized")  # starts at t=0
    for n in (1000, 1000, 500, 2000):  # at t=4, 10.5, 12, 21
        counter.add(n)
    assert [r.getMessage() for r in caplog.records] == [
        "VocabGen: 2,000 lines pretokenized so far",
        "VocabGen: 4,500 lines pretokenized so far",
    ]


def test_a_beam_step_reports_while_it_runs(monkeypatch, caplog):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)  # report on every element
    caplog.set_level(logging.INFO, logger="components.runtime.progress")
    with test_pipeline.TestPipeline() as p:
        _ = p | beam.Create([b"a" * 20] * 3) | beam.ParDo(executor._FilterLines(10, "train.txt"))
    assert "TextExampleGen[train.txt]: 3 lines read so far" in caplog.text
