"""One pipeline run at a time per output folder, and no MLflow run left RUNNING by a killed one.

Two runs in the same `output_dir` would share its ML Metadata store and the Trainer's
checkpoints. `output_lock` holds an exclusive `flock` on `<output_dir>/.run.lock` for
the whole run; a second run fails at once, naming the process that holds it. The
kernel drops the lock when its process dies, however it dies (SIGKILL, OOM killer).

A run killed that way cannot end its MLflow run, which then stays RUNNING forever. Once
this process holds the lock, no other process runs from this folder, so every MLflow
run still RUNNING for a pipeline run recorded in this folder's ML Metadata is such a
leftover: `end_orphaned_runs` marks each one FAILED, with a tag saying why, and
`link_runs` links it with the run that followed; `end_orphaned_executions` does the same
for the ML Metadata executions the killed run left RUNNING (CANCELED). Runs logged from other folders or
machines to the same tracking server are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Iterator, List

from components.runtime.errors import UserInputError

LOCK_FILE = ".run.lock"
ENDED_BY_TAG = "minigpt.ended_by"
ENDED_BY_NEXT_RUN = "a later run: the process of this run died without ending it"
# On the run that followed killed ones: their run ids; on each killed run: the follower.
AFTER_KILLED_TAG = "minigpt.after_killed_runs"
CONTINUED_BY_TAG = "minigpt.continued_by"


class RunInProgressError(UserInputError):
    """Another pipeline run is using the same output folder."""


@contextlib.contextmanager
def output_lock(output_dir: str) -> Iterator[None]:
    """Holds `<output_dir>/.run.lock` for the block; raises RunInProgressError if taken,
    UserInputError if the folder cannot be written (read-only, no permission)."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (closed below, after the lock)
    except OSError as e:
        raise UserInputError(
            f"output_dir {output_dir} cannot be written ({e.strerror}); point it at a writable folder "
            "with --set output_dir=..."
        ) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunInProgressError(
                f"output_dir {output_dir} is in use by another pipeline run ({holder}); wait for it to "
                "finish, or give this run its own folder with --set output_dir=..."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def end_orphaned_runs(metadata_path: str, tracking_uri: str, experiment_name: str) -> List[str]:
    """Marks FAILED the MLflow runs still RUNNING for pipeline runs of this folder's
    ML Metadata store; call while holding `output_lock`. Returns their ids."""
    from mlflow.entities import RunStatus  # pylint: disable=import-outside-toplevel
    from mlflow.tracking import MlflowClient  # pylint: disable=import-outside-toplevel

    from components.tracking.mlflow_runs import PIPELINE_RUN_ID_TAG  # pylint: disable=import-outside-toplevel
    from pipeline.run_summary import pipeline_run_ids  # pylint: disable=import-outside-toplevel

    ours = set(pipeline_run_ids(metadata_path))
    if not ours:
        return []
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
    ended = []
    for run in running:
        if run.data.tags.get(PIPELINE_RUN_ID_TAG) in ours:
            client.set_tag(run.info.run_id, ENDED_BY_TAG, ENDED_BY_NEXT_RUN)
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            ended.append(run.info.run_id)
    return ended


def end_orphaned_executions(metadata_path: str) -> List[str]:
    """Marks CANCELED the ML Metadata executions a killed run of this folder left RUNNING
    (TFX could not record their end); call while holding `output_lock`. Returns
    `<component> (execution <id>)` for each. Their half-written outputs were never
    published, so no later component consumes them."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    from tfx.orchestration import metadata  # pylint: disable=import-outside-toplevel

    if not os.path.exists(metadata_path):
        return []
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as m:
        running = [e for e in m.store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
        types = {t.id: t.name.rsplit(".", 1)[-1] for t in m.store.get_execution_types()}
        for execution in running:
            execution.last_known_state = metadata_store_pb2.Execution.CANCELED
            execution.custom_properties[ENDED_BY_TAG].string_value = ENDED_BY_NEXT_RUN
        if running:
            m.store.put_executions(running)
    return [f"{types[e.type_id]} (execution {e.id})" for e in running]


def link_runs(tracking_uri: str, new_run_id: str, killed_run_ids: List[str]) -> None:
    """Tags the run that followed killed ones with their ids, and each of them with it."""
    from mlflow.tracking import MlflowClient  # pylint: disable=import-outside-toplevel

    client = MlflowClient(tracking_uri)
    client.set_tag(new_run_id, AFTER_KILLED_TAG, ",".join(killed_run_ids))
    for run_id in killed_run_ids:
        client.set_tag(run_id, CONTINUED_BY_TAG, new_run_id)
