"""The flags of every Beam step: this machine's cores, or a Dataflow job.

TFX hands `beam_pipeline_args` to each Beam component (TextExampleGen, VocabGen,
Tokenize), locally or inside a Kubeflow/Vertex task. Dataflow workers run the pipeline
image (`--sdk_container_image`), which holds the pinned TensorFlow, tfx-bsl and keras-hub
that the transforms import; `--setup_file` also ships this checkout's package as an
sdist, so the workers run the code that launched the job even if the image is older.
"""

from __future__ import annotations

import os
from typing import List

from components.errors import ConfigError
from pipeline.config import PipelineConfig

# setup.py of this checkout, for a run launched here (a compiled spec uses image.SETUP_FILE).
LOCAL_SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def direct_runner_args(cfg: PipelineConfig) -> List[str]:
    """Beam's DirectRunner in multi-processing mode: every core of this machine."""
    return [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={cfg.beam.direct_num_workers}",
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


def dataflow_args(cfg: PipelineConfig, setup_file: str = LOCAL_SETUP_FILE) -> List[str]:
    """Beam flags for DataflowRunner from `cfg.cloud` (checked by `check_dataflow`)."""
    cloud, dataflow = cfg.cloud, cfg.cloud.dataflow
    temp_location = dataflow.temp_location.rstrip("/")
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
        f"--setup_file={setup_file}",
        *cfg.beam.extra_args,
    ]
