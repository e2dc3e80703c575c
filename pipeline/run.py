"""Runs the minigpt pipeline: `python pipeline/run.py --runner=DirectRunner [--config ...]`.

Kept short on purpose: parse flags, validate the config and the input files before any
work starts, then either run the pipeline here with TFX's LocalDagRunner (Beam steps on
the DirectRunner, or on Dataflow) and print where everything
went, or compile it for Kubeflow Pipelines / Vertex AI and submit or schedule it there.
TensorFlow, TFX and MLflow are imported only once the config is valid, so a bad flag
fails in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import resource
import sys
from typing import Iterator, List, Optional

# Run as a script, Python puts pipeline/ first on sys.path, where pipeline/pipeline.py
# would shadow the `pipeline` package; the repository root belongs there instead.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = _REPO_ROOT

from components import interrupt  # noqa: E402
from components.errors import ConfigError, PlatformError, UserInputError, first_line  # noqa: E402
from pipeline import image  # noqa: E402
from pipeline.beam_args import LOCAL_SETUP_FILE, check_dataflow, dataflow_args, direct_runner_args  # noqa: E402
from pipeline.config import PipelineConfig, load_config  # noqa: E402
from pipeline.console import configure_logging, quiet_environment  # noqa: E402
from pipeline.kubeflow import check_orchestrator  # noqa: E402
from pipeline.run_lock import end_orphaned_executions, end_orphaned_runs, link_runs, output_lock  # noqa: E402

RUNNERS = ("DirectRunner", "DataflowRunner")
ORCHESTRATORS = ("local", "vertex", "kubeflow")
# Flags that set a config key; a flag wins over the config file and --set.
CONFIG_FLAGS = {
    "project": "cloud.project",
    "region": "cloud.region",
    "temp_location": "cloud.dataflow.temp_location",
    "image": "cloud.image",
    "pipeline_root": "pipeline_root",
}
# Flags that only mean something to Kubeflow / Vertex.
ORCHESTRATOR_FLAGS = {"schedule": "--schedule", "compile_only": "--compile-only", "host": "--host"}
# MLflow 3.17's UI opens in its GenAI view unless a link asks for the training one.
UI_VIEW = "?workflowType=machine_learning"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="DirectRunner", choices=RUNNERS, help="Beam runner for the Beam steps.")
    parser.add_argument(
        "--orchestrator",
        default="local",
        choices=ORCHESTRATORS,
        help="Where the DAG runs: here (local), or compiled and submitted to Vertex AI / Kubeflow Pipelines.",
    )
    parser.add_argument(
        "--config", default=os.path.join(_REPO_ROOT, "configs", "default.yaml"), help="YAML config file."
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override one config value, e.g. --set train.epochs=2 (repeatable).",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="Show every library's log lines (TensorFlow, TFX, Beam, MLflow)."
    )
    cloud = parser.add_argument_group("production runs (README: Running in production)")
    cloud.add_argument("--project", help="Google Cloud project (cloud.project).")
    cloud.add_argument("--region", help="Google Cloud region (cloud.region).")
    cloud.add_argument(
        "--temp_location", "--temp-location", help="gs:// folder for Dataflow (cloud.dataflow.temp_location)."
    )
    cloud.add_argument("--image", help="The pipeline image built from the Dockerfile (cloud.image).")
    cloud.add_argument("--pipeline-root", "--pipeline_root", dest="pipeline_root", help="gs:// artifact root.")
    cloud.add_argument("--schedule", metavar="CRON", help="Create a recurring run instead of one run.")
    cloud.add_argument("--compile-only", metavar="PATH", help="Write the compiled pipeline spec JSON and stop.")
    cloud.add_argument("--host", metavar="URL", help="Kubeflow Pipelines API URL (--orchestrator=kubeflow).")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> PipelineConfig:
    """The config with the flags applied, checked for the chosen runner and orchestrator.

    Raises:
      ConfigError: naming the flag or key at fault, before any work starts.
    """
    flags = {key: getattr(args, name) for name, key in CONFIG_FLAGS.items() if getattr(args, name) is not None}
    cfg = load_config(args.config, args.overrides, flags)
    if args.orchestrator == "local":
        for name, flag in ORCHESTRATOR_FLAGS.items():
            if getattr(args, name) is not None:
                raise ConfigError(flag, "needs --orchestrator=vertex or --orchestrator=kubeflow")
    elif args.host is not None and args.orchestrator != "kubeflow":
        raise ConfigError("--host", "names a Kubeflow Pipelines API: use it with --orchestrator=kubeflow")
    if args.runner == "DataflowRunner":
        check_dataflow(cfg)
    if args.orchestrator != "local":
        check_orchestrator(cfg, args.orchestrator, args.host, args.schedule, args.compile_only is not None)
    return cfg


def beam_args(cfg: PipelineConfig, args: argparse.Namespace, corpus_bytes: Optional[int] = None) -> List[str]:
    """The Beam steps' flags; a compiled spec names files as the image holds them.

    `corpus_bytes` (the split files' size, where known) lets DirectRunner's `auto` mode
    run a small corpus in this process.
    """
    setup_file = LOCAL_SETUP_FILE if args.orchestrator == "local" else image.SETUP_FILE
    if args.runner == "DataflowRunner":
        return dataflow_args(cfg, setup_file)
    return direct_runner_args(cfg, corpus_bytes, setup_file)


def submit(cfg: PipelineConfig, args: argparse.Namespace) -> None:
    """Compiles the pipeline to a spec JSON, then submits or schedules it (or stops there)."""
    from pipeline.kubeflow import compile_pipeline_job, submit_to_kubeflow, submit_to_vertex, write_pipeline_job

    # Kubeflow Pipelines uploads only .yaml packages; Vertex reads the PipelineJob JSON.
    suffix = "yaml" if args.orchestrator == "kubeflow" else "json"
    spec_path = args.compile_only or os.path.join(cfg.output_dir, f"{cfg.pipeline_name}_{args.orchestrator}.{suffix}")
    write_pipeline_job(compile_pipeline_job(cfg, beam_args(cfg, args)), spec_path, args.orchestrator)
    print(f"Compiled pipeline spec: {os.path.abspath(spec_path)}", flush=True)
    if args.compile_only:
        return
    platform = "Vertex AI Pipelines" if args.orchestrator == "vertex" else f"Kubeflow Pipelines at {args.host}"
    try:
        if args.orchestrator == "vertex":
            name = submit_to_vertex(cfg, spec_path, args.schedule)
        else:
            name = submit_to_kubeflow(cfg, spec_path, args.host, args.schedule)
    except Exception as e:  # pylint: disable=broad-except  (whatever the SDK's network call raised)
        raise PlatformError(
            f"{platform} did not accept the pipeline ({type(e).__name__}: {first_line(e)}); "
            f"the compiled spec is kept at {spec_path}"
        ) from e
    print(f"{'Scheduled' if args.schedule else 'Submitted'} on {platform}: {name}", flush=True)


def run(cfg: PipelineConfig, args: argparse.Namespace) -> None:
    """Validates the inputs, runs the pipeline locally and prints a summary."""
    from components.tracking import check_reachable
    from pipeline.corpus import check_split_file, file_size, optional_split_file, resolve_corpus_dir
    from pipeline.run_summary import latest_run

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
    split_files = [
        check_split_file(corpus_dir, cfg.data.train_file, "data.train_file"),
        check_split_file(corpus_dir, cfg.data.eval_file, "data.eval_file"),
    ]
    test_file = optional_split_file(corpus_dir, cfg.data.test_file, "data.test_file")
    if test_file:
        split_files.append(test_file)
    else:
        if cfg.data.test_file:
            print(
                f"No test split ({os.path.join(corpus_dir, cfg.data.test_file)} does not exist): the only perplexity "
                "reported is the eval split's, which also chose the kept epoch.",
                flush=True,
            )
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_file=None))
    beam_pipeline_args = beam_args(cfg, args, corpus_bytes=sum(file_size(path) for path in split_files))

    interrupt.install()  # a Ctrl-C that Python drops in a finalizer still stops training
    with output_lock(cfg.output_dir):
        killed = end_orphaned_runs(cfg.metadata_path, cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name)
        for run_id in killed:
            print(f"MLflow run {run_id} was left RUNNING by a killed run of this folder: marked FAILED.", flush=True)
        for execution in end_orphaned_executions(cfg.metadata_path):
            print(f"{execution} was left RUNNING by a killed run of this folder: marked CANCELED.", flush=True)
        _run_locally(cfg, corpus_dir, beam_pipeline_args)
        evaluation = latest_run(cfg.metadata_path).evaluation or {}
        if killed and "mlflow_run_id" in evaluation:
            link_runs(cfg.resolved_tracking_uri(), evaluation["mlflow_run_id"], killed)
    print_summary(cfg)


def _run_locally(cfg: PipelineConfig, corpus_dir: str, beam_pipeline_args: List[str]) -> None:
    """The TFX DAG on LocalDagRunner, with MLflow's variables set for every component."""
    from tfx import v1 as tfx

    from components.tracking import tracking_environment
    from pipeline.pipeline import create_pipeline

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
            _end_open_mlflow_run(cfg, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        except Exception as cleanup_error:  # pylint: disable=broad-except
            # A full disk fails this too; the error that stopped the run is the one to report.
            print(f"warning: could not end the MLflow run: {first_line(cleanup_error)}", file=sys.stderr)
        raise


def _end_open_mlflow_run(cfg: PipelineConfig, status: str) -> None:
    """Safety net: a run still RUNNING after a failure (FAILED) or an interrupt (KILLED)
    ends with that status, not RUNNING forever."""
    from mlflow.tracking import MlflowClient

    from components.tracking import check_reachable, find_run
    from pipeline.run_summary import latest_run

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


def print_summary(cfg: PipelineConfig) -> None:
    from pipeline.run_summary import latest_run, perplexities

    summary = latest_run(cfg.metadata_path)
    evaluation = summary.evaluation or {}
    tracking_uri = cfg.resolved_tracking_uri()
    lines = [
        "",
        "=" * 72,
        f"Pipeline run {summary.pipeline_run_id}: "
        + ", ".join(f"{name} {state}" for name, state in summary.states.items()),
        f"Artifacts:        {cfg.resolved_pipeline_root}",
        f"Trained model:    {summary.outputs.get('Model', '?')}",
        f"Evaluation:       {summary.outputs.get('ModelEvaluation', '?')}",
        *(
            f"{row.split.capitalize() + ' perplexity:':<18}{row.perplexity:.2f} "
            f"(token-weighted, {row.tokens} tokens; {row.meaning})"
            for row in perplexities(evaluation)
        ),
        f"MLflow run:       {evaluation.get('mlflow_run_id', '?')}",
    ]
    if all(state == "CACHED" for state in summary.states.values()):
        lines.append("                  (every component was cached: this is the run that produced the results)")
    for name, text in evaluation.get("samples", {}).items():
        lines.append(f"  {name:>11}: {text[:100]}{'...' if len(text) > 100 else ''}")
    # The mlflow beside this interpreter (the project's venv), so the command works from any directory.
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    if "mlflow_run_id" in evaluation:
        from pipeline.report import write_report

        lines.append(f"Run report:       {write_report(summary, tracking_uri, cfg.output_dir)}")
    lines.append(f"Browse MLflow:    {mlflow_cli} ui --backend-store-uri {tracking_uri} --port 5000")
    if "mlflow_run_id" in evaluation:
        from mlflow.tracking import MlflowClient

        run_id = evaluation["mlflow_run_id"]
        experiment_id = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
        lines.append(f"  then open:      http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}{UI_VIEW}")
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions behind it (causes, else contexts), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def _root_user_error(error: BaseException):
    """The UserInputError behind `error`, if any (Beam and TFX may wrap it)."""
    return next((e for e in _exception_chain(error) if isinstance(e, UserInputError)), None)


# What a full or read-only disk raises, wherever it is hit.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _disk_problem(error: BaseException) -> Optional[str]:
    """`<what> writing <file>` if a full or read-only disk is behind `error`, else None."""
    for e in _exception_chain(error):
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return f"{os.strerror(e.errno)} writing {e.filename or 'a file'}"
        if "database or disk is full" in str(e):  # SQLite (MLflow's and ML Metadata's stores)
            return "disk full writing a SQLite store (MLflow or ML Metadata)"
        # What SQLite says when a write passes the file size limit (EFBIG).
        if "disk I/O error" in str(e) and _file_size_limit() is not None:
            return "I/O error writing a SQLite store (MLflow or ML Metadata)"
    return None


def _file_size_limit() -> Optional[int]:
    """The largest file this process may write (`ulimit -f`), in bytes; None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _disk_advice() -> str:
    limit = _file_size_limit()
    if limit is not None:
        return f"raise this shell's file size limit (`ulimit -f`, now {limit // 1024} KiB), or free space"
    return "free space, or point output_dir and pipeline_root at another disk"


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_environment(args.verbose)  # before TensorFlow is imported
    try:
        cfg = load(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    try:
        if args.orchestrator == "local":
            run(cfg, args)
        else:
            submit(cfg, args)
    except KeyboardInterrupt:
        print(
            "interrupted: the pipeline's MLflow run ended KILLED; the same command resumes "
            "(finished components are cached, training restarts from its last epoch)",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # pylint: disable=broad-except
        user_error = _root_user_error(e)
        if user_error is not None:
            print(f"error: {user_error}", file=sys.stderr)
            return 1
        from components.tracking import check_reachable

        unreachable = check_reachable(cfg.resolved_tracking_uri(), timeout_s=2)
        if unreachable is not None:
            print(
                f"error: the MLflow tracking server {cfg.resolved_tracking_uri()} stopped answering ({unreachable}). "
                "Finished components are cached, a trained model is kept: start the server and run the same "
                "command again.",
                file=sys.stderr,
            )
            return 1
        disk = _disk_problem(e)
        if disk is None:
            raise
        print(
            f"error: {disk}; {_disk_advice()}. Finished components are cached: the same command resumes.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
