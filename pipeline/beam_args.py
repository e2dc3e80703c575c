"""The flags of every Beam step: this machine's cores, or a Dataflow job.

TFX hands `beam_pipeline_args` to each Beam component (TextExampleGen, VocabGen,
Tokenize), locally or inside a Kubeflow/Vertex task. Dataflow workers run the pipeline
image (`--sdk_container_image`), which holds the pinned TensorFlow, tfx-bsl and keras-hub
that the transforms import and this project's code: the image is the one way our code
reaches them (`dataflow_args`).
"""

from __future__ import annotations

import os
from typing import List, Optional

from components.runtime.errors import ConfigError
from pipeline.config import PipelineConfig

# Largest corpus (train + eval split files) that `auto` runs in memory: gutenberg-large's
# 64 MB ran VocabGen in 13.6 s in memory vs 19.0 s on 2 worker processes (BENCHMARKS.md §6).
IN_MEMORY_MAX_BYTES = 64 * 2**20

# setup.py of this checkout, for a run launched here (a compiled spec uses image.SETUP_FILE).
LOCAL_SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def direct_runner_args(
    cfg: PipelineConfig, corpus_bytes: Optional[int] = None, setup_file: str = LOCAL_SETUP_FILE
) -> List[str]:
    """Beam's DirectRunner: in this process for a small corpus, else a worker per core.

    `beam.direct_running_mode: auto` runs in memory when the split files (`corpus_bytes`)
    are known and at most IN_MEMORY_MAX_BYTES: starting the worker processes, each of
    which imports TensorFlow, cost ~5.6 s per Beam step on 2 cores, more than their
    second core saves on such corpora (BENCHMARKS.md §6).

    `--setup_file` names the package the workers need, which DirectRunner's workers
    already import from this environment. Without a dependency flag, TFX copies its
    whole installed package (49 MB) to a fresh temporary folder and builds an sdist of
    it before every Beam step (~1 s each), and never deletes it: 147 MB left in /tmp by
    every run.
    """
    mode = cfg.beam.direct_running_mode
    if mode == "auto":
        small = corpus_bytes is not None and corpus_bytes <= IN_MEMORY_MAX_BYTES
        mode = "in_memory" if small else "multi_processing"
    # in_memory runs in this process: one worker, whatever direct_num_workers says.
    workers = cfg.beam.direct_num_workers if mode == "multi_processing" else 1
    return [
        "--runner=DirectRunner",
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={workers}",
        f"--setup_file={setup_file}",
        *cfg.beam.extra_args,
    ]


def check_dataflow(cfg: PipelineConfig) -> None:
    """What a Dataflow job cannot start without, as one ConfigError naming the flag."""
    cloud = cfg.cloud
    for flag, value in (("--project", cloud.project), ("--region", cloud.region)):
        if not value:
            raise ConfigError(flag, "is required with --runner=DataflowRunner")
    if not cloud.dataflow.temp_location:
        raise ConfigError("--temp_location", "is required with --runner=DataflowRunner (a gs:// folder)")
    if not cloud.image:
        raise ConfigError(
            "--image",
            "is required with --runner=DataflowRunner: Dataflow workers run the pipeline image "
            "(TensorFlow, tfx-bsl, keras-hub); build it from the Dockerfile (README: Running in production)",
        )
    if not cfg.resolved_pipeline_root.startswith("gs://"):
        raise ConfigError(
            "--pipeline-root",
            f"must be a gs:// folder with --runner=DataflowRunner (Dataflow workers write the "
            f"artifacts there), got {cfg.resolved_pipeline_root!r}",
        )
    if not cfg.data.corpus.startswith("gs://"):
        raise ConfigError(
            "data.corpus",
            f"must be a gs:// folder with --runner=DataflowRunner (workers read the split files), "
            f"got {cfg.data.corpus!r}; copy the corpus there with `gsutil cp`",
        )


def dataflow_args(cfg: PipelineConfig) -> List[str]:
    """Beam flags for DataflowRunner from `cfg.cloud` (checked by `check_dataflow`).

    The workers run the code the pipeline image holds, and nothing is staged for them to
    install: no `--setup_file`, `--requirements_file` or `--extra_package`. A staged sdist
    would never be imported (the SDK harness starts in the image's WORKDIR, /pipeline,
    which is first on `sys.path` and holds the image's copy of the same packages), and
    installing it needs a package index, which workers without public IPs cannot reach.
    So a change to the code needs a new image (README: Running in production); with
    `--sdk_container_image` set, TFX builds no package of its own either.

    The workers' identity and network are Dataflow's defaults (the Compute Engine default
    service account, the default network, public IPs) unless the config names them.
    """
    cloud, dataflow = cfg.cloud, cfg.cloud.dataflow
    temp_location = dataflow.temp_location.rstrip("/")
    named = {"--service_account_email": dataflow.service_account_email, "--subnetwork": dataflow.subnetwork}
    return [
        "--runner=DataflowRunner",
        f"--project={cloud.project}",
        f"--region={cloud.region}",
        f"--temp_location={temp_location}",
        f"--staging_location={temp_location}/staging",
        f"--machine_type={dataflow.machine_type}",
        f"--max_num_workers={dataflow.max_num_workers}",
        f"--disk_size_gb={dataflow.disk_size_gb}",
        "--experiments=use_runner_v2",
        f"--sdk_container_image={cloud.image}",
        *(f"{flag}={value}" for flag, value in named.items() if value),
        *([] if dataflow.use_public_ips else ["--no_use_public_ips"]),
        *cfg.beam.extra_args,
    ]


def pipeline_beam_args(
    cfg: PipelineConfig, runner: str, setup_file: str, corpus_bytes: Optional[int] = None
) -> List[str]:
    """The Beam steps' flags for `runner` ("DirectRunner" or "DataflowRunner").

    `setup_file` (DirectRunner only) is this checkout's for a local run, the image's for
    a compiled spec; `corpus_bytes` (the split files' size, where known) lets DirectRunner's `auto` mode
    run a small corpus in this process.
    """
    if runner == "DataflowRunner":
        return dataflow_args(cfg)
    return direct_runner_args(cfg, corpus_bytes, setup_file)
