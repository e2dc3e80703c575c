"""One run per output folder; MLflow runs a killed run left RUNNING are ended FAILED."""

import os
import signal
import subprocess
import sys
import time

import pytest
from ml_metadata.proto import metadata_store_pb2
from mlflow.tracking import MlflowClient
from tfx.orchestration import metadata

from components.tracking.mlflow_runs import PipelineRun
from pipeline.run_lock import ENDED_BY_TAG, RunInProgressError, end_orphaned_executions, end_orphaned_runs, output_lock
from tests.test_run_summary import COMPLETE, record_pipeline_run

RUNNING = metadata_store_pb2.Execution.RUNNING


def test_a_second_run_in_the_same_folder_is_refused_with_the_holder(tmp_path):
    with output_lock(str(tmp_path)):
        with pytest.raises(RunInProgressError, match=rf"in use by another pipeline run \(pid {os.getpid()}, started"):
            with output_lock(str(tmp_path)):
                pass
    with output_lock(str(tmp_path)):  # released, also after the refusal
        pass


def test_a_killed_holder_releases_the_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pipeline.run_lock import output_lock\nwith output_lock({str(tmp_path)!r}):\n"
         "    print('locked', flush=True)\n    import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunInProgressError, match=f"pid {holder.pid}"):
        with output_lock(str(tmp_path)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.time() + 10
    while True:  # the kernel releases the lock with the process
        try:
            with output_lock(str(tmp_path)):
                break
        except RunInProgressError:
            assert time.time() < deadline
            time.sleep(0.1)


def test_only_runs_of_this_folder_are_ended(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    metadata_path = str(tmp_path / "metadata.sqlite")
    record_pipeline_run(metadata_path, "run-1", {"Trainer": COMPLETE})
    record_pipeline_run(metadata_path, "run-2", {"Evaluator": COMPLETE})
    killed = PipelineRun.for_pipeline_run(uri, "exp", "p", "run-1")  # left RUNNING
    finished = PipelineRun.for_pipeline_run(uri, "exp", "p", "run-2")
    finished.finish()
    elsewhere = PipelineRun.for_pipeline_run(uri, "exp", "p", "run-of-another-folder")
    assert end_orphaned_runs(metadata_path, uri, "exp") == [killed.run_id]
    client = MlflowClient(uri)
    run = client.get_run(killed.run_id)
    assert run.info.status == "FAILED" and "died" in run.data.tags[ENDED_BY_TAG]
    assert client.get_run(finished.run_id).info.status == "FINISHED"
    assert client.get_run(elsewhere.run_id).info.status == "RUNNING"
    assert end_orphaned_runs(str(tmp_path / "none.sqlite"), uri, "exp") == []


def test_executions_a_killed_run_left_running_are_canceled(tmp_path):
    metadata_path = str(tmp_path / "metadata.sqlite")
    record_pipeline_run(metadata_path, "run-1", {"TextExampleGen": COMPLETE, "VocabGen": RUNNING})
    assert end_orphaned_executions(metadata_path) == ["VocabGen (execution 2)"]
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as m:
        states = {e.id: e.last_known_state for e in m.store.get_executions()}
        assert states == {1: COMPLETE, 2: metadata_store_pb2.Execution.CANCELED}
    assert end_orphaned_executions(metadata_path) == []  # nothing left to end
    assert end_orphaned_executions(str(tmp_path / "none.sqlite")) == []
