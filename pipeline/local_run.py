"""A local run: check the inputs, run the TFX DAG on this machine with LocalDagRunner (its
Beam steps on the DirectRunner or Dataflow), and print where everything went.

The checks come first and take seconds (the tracking server answers, the split files
exist and are text), so a mistake stops the run before any component starts. A run that
fails or is interrupted ends its MLflow run FAILED or KILLED, never leaving it RUNNING.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import List

from components.runtime import interrupt
from components.runtime.errors import ConfigError, first_line
from pipeline.beam_args import LOCAL_SETUP_FILE, pipeline_beam_args
from pipeline.config import PipelineConfig
from pipeline.run_lock import end_orphaned_executions, end_orphaned_runs, link_runs, output_lock
from pipeline.run_summary import RunSummary, latest_run
from pipeline.summary import print_summary


def run_locally(cfg: PipelineConfig, runner: str) -> RunSummary:
    """Validates the inputs, runs the pipeline here (its Beam steps on `runner`), prints a
    summary and returns it."""
    from components.tracking.mlflow_runs import check_reachable
    from pipeline.corpus import corpus_splits, file_size, resolve_corpus_dir

    # A tracking server that is down would otherwise surface after the Beam steps, in the
    # Trainer, after MLflow's retries: check it first, once, in seconds.
    unreachable = check_reachable(cfg.resolved_tracking_uri())
    if unreachable:
        raise ConfigError(
            "mlflow.tracking_uri",
            f"no MLflow tracking server answers at {cfg.resolved_tracking_uri()} ({unreachable}); "
            "start it, or fix the URI or MLFLOW_TRACKING_URI",
        )
    corpus_dir = resolve_corpus_dir(cfg.data.corpus, cfg.data.zip_subdir, cfg.data.cache_dir, cfg.data.sha256)
    splits = corpus_splits(
        corpus_dir, {"train": cfg.data.train_file, "eval": cfg.data.eval_file, "test": cfg.data.test_file}
    )
    if not splits["test"]:
        if cfg.data.test_file:
            print(
                f"No test split ({os.path.join(corpus_dir, cfg.data.test_file)} does not exist): the only perplexity "
                "reported is the eval split's, which also chose the kept epoch.",
                flush=True,
            )
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_file=None))
    corpus_bytes = sum(file_size(path) for paths in splits.values() for path in paths)
    beam_pipeline_args = pipeline_beam_args(cfg, runner, LOCAL_SETUP_FILE, corpus_bytes)

    interrupt.install()  # a Ctrl-C that Python drops in a finalizer still stops training
    with output_lock(cfg.output_dir):
        killed = end_orphaned_runs(cfg.metadata_path, cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name)
        for run_id in killed:
            print(f"MLflow run {run_id} was left RUNNING by a killed run of this folder: marked FAILED.", flush=True)
        for execution in end_orphaned_executions(cfg.metadata_path):
            print(f"{execution} was left RUNNING by a killed run of this folder: marked CANCELED.", flush=True)
        _run_dag(cfg, corpus_dir, beam_pipeline_args)
        summary = latest_run(cfg.metadata_path)
        evaluation = summary.evaluation or {}
        if killed and "mlflow_run_id" in evaluation:
            link_runs(cfg.resolved_tracking_uri(), evaluation["mlflow_run_id"], killed)
    print_summary(cfg, summary)
    return summary


def _run_dag(cfg: PipelineConfig, corpus_dir: str, beam_pipeline_args: List[str]) -> None:
    """The TFX DAG on LocalDagRunner, with MLflow's variables set for every component."""
    from tfx import v1 as tfx

    from components.tracking.mlflow_runs import tracking_environment
    from pipeline.dag import create_pipeline

    pipeline = create_pipeline(
        cfg,
        corpus_dir,
        beam_pipeline_args,
        tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path),
    )
    try:
        with tracking_environment(cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except BaseException as e:
        try:
            end_open_mlflow_run(cfg, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        except Exception as cleanup_error:  # pylint: disable=broad-except
            # A full disk fails this too; the error that stopped the run is the one to report.
            print(f"warning: could not end the MLflow run: {first_line(cleanup_error)}", file=sys.stderr)
        raise


def end_open_mlflow_run(cfg: PipelineConfig, status: str) -> None:
    """Safety net: a run still RUNNING after a failure (FAILED) or an interrupt (KILLED)
    ends with that status, not RUNNING forever."""
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_runs import check_reachable, find_run

    summary = latest_run(cfg.metadata_path)
    if summary is None:
        return
    unreachable = check_reachable(cfg.resolved_tracking_uri(), timeout_s=2)
    if unreachable is not None:  # not MLflow's unbounded retries: the next run ends it (end_orphaned_runs)
        print(f"warning: could not end the MLflow run, the server does not answer ({unreachable})", file=sys.stderr)
        return
    client = MlflowClient(cfg.resolved_tracking_uri())
    run_id = find_run(client, cfg.mlflow.experiment_name, summary.pipeline_run_id)
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)
