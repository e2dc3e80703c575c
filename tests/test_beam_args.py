"""The Beam steps' flags: every core here, or a Dataflow job that can run our code."""

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)
from tfx.utils import dependency_utils

from components.runtime.errors import ConfigError
from pipeline.beam_args import check_dataflow, dataflow_args
from pipeline.config import load_config
from tests.conftest import TINY_CONFIG

DATAFLOW = [
    "cloud.project=my-project",
    "cloud.region=europe-west4",
    "cloud.image=europe-docker.pkg.dev/my-project/ml/minigpt:1",
    "cloud.dataflow.temp_location=gs://bucket/tmp/",
    "cloud.dataflow.machine_type=n2-highmem-8",
    "cloud.dataflow.max_num_workers=40",
    "pipeline_root=gs://bucket/root",
    "data.corpus=gs://bucket/simplebooks-92-raw",
    "cloud.dataflow.service_account_email=workers@my-project.iam.gserviceaccount.com",
    "cloud.dataflow.subnetwork=regions/europe-west4/subnetworks/private",
    "cloud.dataflow.use_public_ips=false",
]
IDENTITY_AND_NETWORK = (
    "cloud.dataflow.service_account_email",
    "cloud.dataflow.subnetwork",
    "cloud.dataflow.use_public_ips",
)


def test_dataflow_options_come_from_the_config_and_ship_our_code():
    cfg = load_config(TINY_CONFIG, DATAFLOW)
    check_dataflow(cfg)
    options = PipelineOptions(dataflow_args(cfg))
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    google = options.view_as(GoogleCloudOptions)
    assert (google.project, google.region) == ("my-project", "europe-west4")
    assert google.temp_location == "gs://bucket/tmp"
    assert google.staging_location == "gs://bucket/tmp/staging"
    workers = options.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n2-highmem-8", 40)
    # Our code reaches the workers one way: the image holds the pinned stack and the
    # package. Nothing is staged for them to pip install (no index behind private IPs),
    # and TFX adds no package of its own (it would otherwise stage an sdist of itself).
    assert workers.sdk_container_image == "europe-docker.pkg.dev/my-project/ml/minigpt:1"
    setup = options.view_as(SetupOptions)
    assert (setup.setup_file, setup.requirements_file, setup.extra_packages) == (None, None, None)
    assert dependency_utils.make_beam_dependency_flags(dataflow_args(cfg)) == dataflow_args(cfg)
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    # The workers run as their own service account, on private IPs in our subnetwork.
    assert google.service_account_email == "workers@my-project.iam.gserviceaccount.com"
    assert (workers.subnetwork, workers.use_public_ips) == ("regions/europe-west4/subnetworks/private", False)


def test_dataflow_workers_keep_dataflows_identity_and_network_unless_the_config_names_them():
    cfg = load_config(TINY_CONFIG, [item for item in DATAFLOW if not item.startswith(IDENTITY_AND_NETWORK)])
    options = PipelineOptions(dataflow_args(cfg))
    assert options.view_as(GoogleCloudOptions).service_account_email is None
    workers = options.view_as(WorkerOptions)
    assert (workers.subnetwork, workers.use_public_ips) == (None, None)


@pytest.mark.parametrize(
    "drop, flag",
    [
        ("cloud.project", "--project"),
        ("cloud.region", "--region"),
        ("cloud.dataflow.temp_location", "--temp_location"),
        ("cloud.image", "--image"),
        ("pipeline_root", "--pipeline-root"),
        ("data.corpus", "data.corpus"),
    ],
)
def test_a_dataflow_run_missing_a_setting_names_its_flag(drop, flag):
    cfg = load_config(TINY_CONFIG, [item for item in DATAFLOW if not item.startswith(drop + "=")])
    with pytest.raises(ConfigError, match=f"^config error: {flag}: "):
        check_dataflow(cfg)


def test_a_local_temp_location_is_refused_when_the_config_is_loaded():
    with pytest.raises(ConfigError, match="cloud.dataflow.temp_location: must be a gs:// folder"):
        load_config(TINY_CONFIG, ["cloud.dataflow.temp_location=/tmp/x"])
