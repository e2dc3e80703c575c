"""Where the tiny end-to-end run's wall time goes: orchestration vs component work.

A benchmark, not a test. Runs the tiny pipeline (configs/tiny.yaml) in this process
through `pipeline.run.run`, as `make run` does, with every component's executor `Do`
timed, and splits the wall time into:

  component work       the executors' `Do`, less the Beam start-up inside the Beam steps
  Beam start-up        per Beam step (TextExampleGen, VocabGen, Tokenize): an empty Beam
                       job with the same flags whose workers import TensorFlow, as ours
                       do, timed in the same run
  TFX per component    driver, cache lookup, MLMD writes, publisher: each component's
                       launch (TFX's `Launcher.launch`) less its `Do`
  between components   pipeline build, MLflow set-up, summary: the rest of the wall time

Orchestration is everything but component work. Each Beam running mode given in
`--modes` is one full run from an empty output folder (so nothing is cached), in this
one process, after TensorFlow, Keras and MLflow are imported (so no run pays that).

Usage:
  python benchmarks/pipeline_overhead.py [--modes multi_processing,in_memory] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import REPO_ROOT  # noqa: E402

TINY_CONFIG = os.path.join(REPO_ROOT, "configs", "tiny.yaml")
BEAM_STEPS = ("TextExampleGen", "VocabGen", "Tokenize")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=TINY_CONFIG)
    p.add_argument("--modes", default="multi_processing,in_memory", help="Beam DirectRunner running modes to compare")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def _import_tensorflow(x):
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    return x


def beam_start_up_seconds(beam_args: List[str]) -> float:
    """Wall time of a Beam job that does nothing but import TensorFlow on its workers."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = p | beam.Create(range(4)) | beam.Map(_import_tensorflow)
    return time.perf_counter() - start


# Seconds of the run in progress, by component id: executor `Do` and the whole launch.
DO_SECONDS: Dict[str, float] = {}
LAUNCH_SECONDS: Dict[str, float] = {}


def _timed(method, seconds: Dict[str, float], name_of):
    """`method`, adding its wall time to `seconds[name_of(self)]` on every call."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            name = name_of(self)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    return wrapper


def time_components(pipeline) -> None:
    """Times every launch (driver, executor, publisher) and every executor `Do`."""
    from tfx.orchestration.portable import launcher

    if not hasattr(launcher.Launcher.launch, "__wrapped__"):
        node_id = lambda launch: launch._pipeline_node.node_info.id  # noqa: E731
        launcher.Launcher.launch = _timed(launcher.Launcher.launch, LAUNCH_SECONDS, node_id)
    for component in pipeline.components:
        executor_class = component.executor_spec.executor_class
        if not hasattr(vars(executor_class).get("Do"), "__wrapped__"):  # its own or an inherited Do
            executor_class.Do = _timed(executor_class.Do, DO_SECONDS, lambda _, name=component.id: name)


def run_once(config: str, mode: str) -> dict:
    """One uncached run of the pipeline in `mode`; the split of its wall time."""
    import pipeline.dag as pipeline_module
    from pipeline.beam_args import direct_runner_args
    from pipeline.config import load_config
    from pipeline.local_run import run_locally

    output_dir = tempfile.mkdtemp(prefix=f"overhead-{mode}-")
    cfg = load_config(config, [f"output_dir={output_dir}", f"beam.direct_running_mode={mode}"])
    beam_args = direct_runner_args(cfg)  # for the empty job: `mode` is not "auto"
    DO_SECONDS.clear()
    LAUNCH_SECONDS.clear()
    create_pipeline = pipeline_module.create_pipeline

    def create_and_time(*args, **kwargs):
        built = create_pipeline(*args, **kwargs)
        time_components(built)
        return built

    pipeline_module.create_pipeline = create_and_time
    try:
        start = time.perf_counter()
        run_locally(cfg, "DirectRunner")
        total = time.perf_counter() - start
    finally:
        pipeline_module.create_pipeline = create_pipeline
    beam_start = beam_start_up_seconds(beam_args)
    do_total, launch_total = sum(DO_SECONDS.values()), sum(LAUNCH_SECONDS.values())
    work = do_total - beam_start * len(BEAM_STEPS)
    parts = {
        "component work": work,
        "Beam start-up": beam_start * len(BEAM_STEPS),
        "TFX per component": launch_total - do_total,
        "between components": total - launch_total,
    }
    return {
        "total_s": total,
        "parts_s": parts,
        "orchestration_share": 1 - work / total,
        "do_s": dict(DO_SECONDS),
        "launch_s": dict(LAUNCH_SECONDS),
        "beam_start_up_s": beam_start,
    }


def main() -> None:
    args = parse_args()
    # Imported before the first run, so that neither mode pays the one-time imports.
    import keras_hub  # noqa: F401
    import mlflow  # noqa: F401
    import tensorflow  # noqa: F401
    import tfx.v1  # noqa: F401

    results = {mode: run_once(args.config, mode) for mode in args.modes.split(",")}
    print(f"\n{args.config}, {os.cpu_count()} cores; seconds (share of the run's wall time)")
    print(f"{'part':<22}" + "".join(f"{mode:>24}" for mode in results))
    for part in next(iter(results.values()))["parts_s"]:
        cells = [f"{r['parts_s'][part]:>13.1f} ({r['parts_s'][part] / r['total_s']:>4.0%})" for r in results.values()]
        print(f"{part:<22}" + "".join(f"{c:>24}" for c in cells))
    print(f"{'total':<22}" + "".join(f"{r['total_s']:>24.1f}" for r in results.values()))
    print(f"{'orchestration share':<22}" + "".join(f"{r['orchestration_share']:>24.0%}" for r in results.values()))
    print("\nper component: executor Do s / whole launch s")
    for name in next(iter(results.values()))["launch_s"]:
        cells = [f"{r['do_s'].get(name, 0):>11.1f} / {r['launch_s'][name]:>5.1f}" for r in results.values()]
        print(f"{name:<22}" + "".join(f"{c:>24}" for c in cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
