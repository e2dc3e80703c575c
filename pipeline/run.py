"""Runs the minigpt pipeline: `python pipeline/run.py --runner=DirectRunner [--config ...]`.

Kept short on purpose: parse flags, validate the config and the input files before any
work starts, run the pipeline with TFX's LocalDagRunner (Beam steps on the DirectRunner
in multi-processing mode), then print where everything went. TensorFlow, TFX and MLflow
are imported only once the config is valid, so a bad flag fails in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

# Run as a script, Python puts pipeline/ first on sys.path, where pipeline/pipeline.py
# would shadow the `pipeline` package; the repository root belongs there instead.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = _REPO_ROOT
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.errors import ConfigError, UserInputError  # noqa: E402
from pipeline.config import PipelineConfig, load_config  # noqa: E402

RUNNERS = ("DirectRunner",)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runner", default="DirectRunner", choices=RUNNERS, help="Beam runner for the Beam steps (local run)."
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
    return parser.parse_args(argv)


def run(cfg: PipelineConfig) -> None:
    """Validates the inputs, runs the pipeline locally and prints a summary."""
    from pipeline.corpus import check_split_file, resolve_corpus_dir

    corpus_dir = resolve_corpus_dir(cfg.data.corpus, cfg.data.zip_subdir, cfg.data.cache_dir)
    check_split_file(corpus_dir, cfg.data.train_file, "data.train_file")
    check_split_file(corpus_dir, cfg.data.eval_file, "data.eval_file")

    from tfx import v1 as tfx

    from components.tracking import tracking_environment
    from pipeline.pipeline import create_pipeline

    os.makedirs(cfg.output_dir, exist_ok=True)
    pipeline = create_pipeline(
        cfg, corpus_dir, tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path)
    )
    try:
        with tracking_environment(cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except BaseException:
        _fail_open_mlflow_run(cfg)
        raise
    print_summary(cfg)


def _fail_open_mlflow_run(cfg: PipelineConfig) -> None:
    """Safety net: a run still RUNNING after a failure ends FAILED, not RUNNING forever."""
    from mlflow.tracking import MlflowClient

    from components.tracking import find_run
    from pipeline.run_summary import latest_run

    summary = latest_run(cfg.metadata_path)
    if summary is None:
        return
    client = MlflowClient(cfg.resolved_tracking_uri())
    run_id = find_run(client, cfg.mlflow.experiment_name, summary.pipeline_run_id)
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FAILED")


def print_summary(cfg: PipelineConfig) -> None:
    from pipeline.run_summary import latest_run

    summary = latest_run(cfg.metadata_path)
    evaluation = summary.evaluation or {}
    tracking_uri = cfg.resolved_tracking_uri()
    lines = [
        "",
        "=" * 72,
        f"Pipeline run {summary.pipeline_run_id}: "
        + ", ".join(f"{name} {state}" for name, state in summary.states.items()),
        f"Artifacts:        {os.path.abspath(cfg.pipeline_root)}",
        f"Trained model:    {summary.outputs.get('Model', '?')}",
        f"Evaluation:       {summary.outputs.get('ModelEvaluation', '?')}",
        f"Eval perplexity:  {evaluation.get('perplexity', float('nan')):.2f} "
        f"(token-weighted, {evaluation.get('num_tokens', 0)} tokens)",
        f"MLflow run:       {evaluation.get('mlflow_run_id', '?')}",
    ]
    if all(state == "CACHED" for state in summary.states.values()):
        lines.append("                  (every component was cached: this is the run that produced the results)")
    for name, text in evaluation.get("samples", {}).items():
        lines.append(f"  {name:>11}: {text[:100]}{'...' if len(text) > 100 else ''}")
    # The mlflow beside this interpreter (the project's venv), so the command works from any directory.
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    lines.append(f"Browse MLflow:    {mlflow_cli} ui --backend-store-uri {tracking_uri} --port 5000")
    if "mlflow_run_id" in evaluation:
        from mlflow.tracking import MlflowClient

        run_id = evaluation["mlflow_run_id"]
        experiment_id = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
        lines.append(f"  then open:      http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)


class _ComponentProgress(logging.Filter):
    """Lets through TFX's one-line progress messages, not its multi-page proto dumps."""

    KEEP = ("Component ", "Execution ", "Skipping component", "Cached")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or str(record.msg).startswith(self.KEEP)


def configure_logging() -> None:
    """Our executors at INFO, TFX's progress lines, everything else at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("components").setLevel(logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    absl_logger.addFilter(_ComponentProgress())
    # Keras warns on every call that keras_hub's attention sub-layers drop the padding
    # mask; the decoder applies its own causal + padding mask, so the warning is noise.
    warnings.filterwarnings("ignore", message=".*does not support masking.*")
    # Beam's DirectRunner relays every worker's start-up warnings; they are not ours to fix.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def _root_user_error(error: BaseException):
    """The UserInputError behind `error`, if any (Beam and TFX may wrap it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        run(cfg)
    except Exception as e:  # pylint: disable=broad-except
        user_error = _root_user_error(e)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
