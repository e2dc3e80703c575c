"""A production run: compile the pipeline for Vertex AI Pipelines or Kubeflow Pipelines,
then submit it, schedule it, or stop at the compiled spec (`--compile-only`)."""

from __future__ import annotations

import argparse
import os

from components.runtime.errors import PlatformError, first_line
from pipeline import image
from pipeline.beam_args import pipeline_beam_args
from pipeline.config import PipelineConfig


def submit(cfg: PipelineConfig, args: argparse.Namespace) -> None:
    """Compiles the pipeline for the platform (Vertex: a PipelineJob JSON; Kubeflow: a YAML
    package), then submits or schedules it (or stops there)."""
    from pipeline.kubeflow import compile_pipeline, submit_to_kubeflow, submit_to_vertex, write_pipeline

    # Kubeflow Pipelines uploads only .yaml packages; Vertex reads the PipelineJob JSON.
    suffix = "yaml" if args.orchestrator == "kubeflow" else "json"
    spec_path = args.compile_only or os.path.join(cfg.output_dir, f"{cfg.pipeline_name}_{args.orchestrator}.{suffix}")
    beam_args = pipeline_beam_args(cfg, args.runner, image.SETUP_FILE)
    write_pipeline(compile_pipeline(cfg, beam_args, args.orchestrator), spec_path)
    print(f"Compiled pipeline spec: {os.path.abspath(spec_path)}", flush=True)
    if args.compile_only:
        return
    platform = "Vertex AI Pipelines" if args.orchestrator == "vertex" else f"Kubeflow Pipelines at {args.host}"
    try:
        if args.orchestrator == "vertex":
            name = submit_to_vertex(cfg, spec_path, args.schedule)
        else:
            name = submit_to_kubeflow(cfg, spec_path, args.host, args.schedule, args.namespace)
    except Exception as e:  # pylint: disable=broad-except  (whatever the SDK's network call raised)
        raise PlatformError(
            f"{platform} did not accept the pipeline ({type(e).__name__}: {first_line(e)}); "
            f"the compiled spec is kept at {spec_path}"
        ) from e
    print(f"{'Scheduled' if args.schedule else 'Submitted'} on {platform}: {name}", flush=True)
