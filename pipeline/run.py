"""Runs the minigpt pipeline: `python pipeline/run.py --runner=DirectRunner [--config ...]`.

The command line only: parse the flags, validate the config, then hand over to a local
run (`pipeline.local_run`) or a compiled, submitted one (`pipeline.cloud_run`), and turn
what a user can fix into one line (`pipeline.diagnosis`). TensorFlow, TFX and MLflow are
imported only once the config is valid, so a bad flag fails in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import sys

from components.runtime.errors import ConfigError
from pipeline.beam_args import check_dataflow
from pipeline.config import PipelineConfig, load_config
from pipeline.console import configure_logging, quiet_environment
from pipeline.diagnosis import explain
from pipeline.kubeflow import ORCHESTRATORS, check_orchestrator

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNERS = ("DirectRunner", "DataflowRunner")
# Flags that set a config key; a flag wins over the config file and --set.
CONFIG_FLAGS = {
    "project": "cloud.project",
    "region": "cloud.region",
    "temp_location": "cloud.dataflow.temp_location",
    "image": "cloud.image",
    "pipeline_root": "pipeline_root",
}
# Flags that only mean something to Kubeflow / Vertex, and those only to Kubeflow.
KUBEFLOW_FLAGS = {"host": "--host", "namespace": "--namespace"}
ORCHESTRATOR_FLAGS = {"schedule": "--schedule", "compile_only": "--compile-only", **KUBEFLOW_FLAGS}


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
    cloud.add_argument(
        "--compile-only", metavar="PATH", help="Write the compiled pipeline spec (Kubeflow: .yaml) and stop."
    )
    cloud.add_argument("--host", metavar="URL", help="Kubeflow Pipelines API URL (--orchestrator=kubeflow).")
    cloud.add_argument(
        "--namespace",
        help="Profile namespace of a multi-user Kubeflow Pipelines; its credentials come from "
        "$KFP_TOKEN or $KF_PIPELINES_SA_TOKEN_PATH (--orchestrator=kubeflow).",
    )
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
    elif args.orchestrator != "kubeflow":
        for name, flag in KUBEFLOW_FLAGS.items():
            if getattr(args, name) is not None:
                raise ConfigError(flag, "is for Kubeflow Pipelines: use it with --orchestrator=kubeflow")
    if args.runner == "DataflowRunner":
        check_dataflow(cfg)
    if args.orchestrator != "local":
        check_orchestrator(cfg, args.orchestrator, args.host, args.schedule, args.compile_only)
    return cfg


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
            from pipeline.local_run import run_locally

            run_locally(cfg, args.runner)
        else:
            from pipeline.cloud_run import submit

            submit(cfg, args)
    except KeyboardInterrupt:
        print(
            "interrupted: the pipeline's MLflow run ended KILLED; the same command resumes "
            "(finished components are cached, training restarts from its last epoch)",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # pylint: disable=broad-except
        message = explain(e, cfg.resolved_tracking_uri())
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
