"""The whole pipeline with its root off this machine's disk, against a real `mlflow server`.

A production run's pipeline root is a bucket: every artifact URI a component gets is
`gs://...`, which TensorFlow (tf.io.gfile) and Beam (FileSystems) address but `open`,
`os.path` and MLflow's uploads do not. A GCS emulator cannot stand in offline: TF 2.16's
GCS client cannot be pointed at one. So the root is `ram://`: TensorFlow's in-memory
filesystem, which Beam reaches through tests.ram_filesystem.RamFileSystem. It is seen by
one process only, so the pipeline runs in this one (its Beam steps in memory).
"""

import os

import pytest
import tensorflow as tf

from components.tracking.mlflow_runs import artifact_paths
from components.tracking.text_model import REGISTERED_MODEL
from pipeline.config import load_config
from pipeline.local_run import run_locally
from tests.conftest import TINY_CONFIG, mlflow_runs
from tests.ram_filesystem import ram_folder

pytestmark = pytest.mark.slow


def test_a_pipeline_root_off_the_local_disk_runs_to_a_finished_mlflow_run(mlflow_server, tmp_path, monkeypatch):
    url, _ = mlflow_server
    for name in [name for name in os.environ if name.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a relative path would land here, as ./ram:/...
    out = tmp_path / "out"
    with ram_folder(tmp_path.name) as root:
        cfg = load_config(
            TINY_CONFIG,
            [f"output_dir={out}", f"pipeline_root={root}/root", f"mlflow.tracking_uri={url}"]
            + ["beam.direct_running_mode=in_memory"],
        )
        summary = run_locally(cfg, "DirectRunner")

        assert set(summary.states.values()) == {"COMPLETE"}, summary.states
        assert summary.outputs and all(uri.startswith(f"{root}/root/") for uri in summary.outputs.values())
        pushed = summary.pushed["pushed_destination"]
        assert pushed.startswith(f"{root}/root/serving/") and tf.io.gfile.exists(f"{pushed}/saved_model.pb")
        # Keras' BackupAndRestore kept its epochs there, and removed them once training ended.
        assert tf.io.gfile.isdir(cfg.checkpoint_root) and cfg.checkpoint_root.startswith(root)
    client, (run,) = mlflow_runs(out, url)
    assert run.info.status == "FINISHED"
    paths = set(artifact_paths(client, run.info.run_id))
    assert {"vocabulary/vocab.txt", "model/minigpt.keras", "model/saved_model.pb", "model/vocab.txt"} <= paths
    assert [v.run_id for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")] == [run.info.run_id]
    assert not [p for p in (tmp_path, out) if (p / "ram:").exists()]
