"""What a pipeline run did, read back from its ML Metadata store.

`run.py` prints this at the end of `make run`; the end-to-end test uses it to prove that
a rerun on unchanged inputs was served from TFX's cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, NamedTuple, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.io import fileio
from tfx.orchestration import metadata

from components.data.formats import EVALUATION_FILE

PIPELINE_RUN_CONTEXT = "pipeline_run"
STATE_NAMES = {
    metadata_store_pb2.Execution.NEW: "NEW",
    metadata_store_pb2.Execution.RUNNING: "RUNNING",
    metadata_store_pb2.Execution.COMPLETE: "COMPLETE",
    metadata_store_pb2.Execution.FAILED: "FAILED",
    metadata_store_pb2.Execution.CACHED: "CACHED",
    metadata_store_pb2.Execution.CANCELED: "CANCELED",
}


@dataclasses.dataclass
class RunSummary:
    pipeline_run_id: str
    # Component name (e.g. "Trainer") -> execution state ("COMPLETE", "CACHED", ...).
    states: Dict[str, str]
    # Component name -> seconds from its execution's creation to its last update in MLMD
    # (driver, executor and publisher; about 0 for a cached component).
    seconds: Dict[str, float]
    # Artifact type name (e.g. "Model") -> URI of this run's output of that type.
    outputs: Dict[str, str]
    evaluation: Optional[dict]
    # The Pusher's record (TFX's `pushed`, `pushed_destination`, and `registered_version`),
    # None when no Pusher ran.
    pushed: Optional[Dict[str, object]] = None


def pipeline_run_ids(metadata_path: str) -> List[str]:
    """Every pipeline run recorded in the SQLite MLMD store (none if it does not exist)."""
    if not os.path.exists(metadata_path):
        return []
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as m:
        return [context.name for context in m.store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)]


def latest_run(metadata_path: str) -> Optional[RunSummary]:
    """The most recent pipeline run recorded in the SQLite MLMD store, or None."""
    if not os.path.exists(metadata_path):
        return None
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as m:
        store = m.store
        runs = store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
        if not runs:
            return None
        run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
        executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
        types = {t.id: t.name for t in store.get_execution_types()}
        names = [types[e.type_id].rsplit(".", 1)[-1] for e in executions]
        states = {name: STATE_NAMES.get(e.last_known_state, "?") for name, e in zip(names, executions)}
        seconds = {
            name: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
            for name, e in zip(names, executions)
        }
        events = store.get_events_by_execution_ids([e.id for e in executions])
        output_ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
        artifact_types = {t.id: t.name for t in store.get_artifact_types()}
        artifacts = store.get_artifacts_by_id(output_ids)
        outputs = {artifact_types[a.type_id]: a.uri for a in artifacts}
        pushed = next((_properties(a) for a in artifacts if artifact_types[a.type_id] == "PushedModel"), None)
    evaluation = None
    if "ModelEvaluation" in outputs:
        path = os.path.join(outputs["ModelEvaluation"], EVALUATION_FILE)
        if fileio.exists(path):  # a gs:// pipeline root (Beam steps on Dataflow) too
            with fileio.open(path) as f:
                evaluation = json.load(f)
    return RunSummary(run.name, states, seconds, outputs, evaluation, pushed)


def _properties(artifact: metadata_store_pb2.Artifact) -> Dict[str, object]:
    """An MLMD artifact's custom properties as plain values."""
    return {key: getattr(value, value.WhichOneof("value")) for key, value in artifact.custom_properties.items()}


def blessing_line(evaluation: Optional[dict], pushed: Optional[Dict[str, object]]) -> Optional[str]:
    """The run's decision in words: "blessed, pushed as version N to D (why)" or "not
    blessed: X > Y"; None for a run without a blessing."""
    decision = (evaluation or {}).get("blessing")
    if not decision:
        return None
    if not decision["blessed"]:
        return f"not blessed: {decision['reason']}"
    if pushed and pushed.get("pushed") == 1:
        return (
            f"blessed, pushed as version {pushed.get('registered_version')} to {pushed.get('pushed_destination')} "
            f"({decision['reason']})"
        )
    return f"blessed, not pushed ({decision['reason']})"


class SplitPerplexity(NamedTuple):
    split: str
    perplexity: float
    tokens: int
    # What the number is, for a reader: held out, or chosen on.
    meaning: str


# The Trainer keeps the epoch with the lowest perplexity on the eval split, so that split's
# figure is chosen on; the test split's is the unbiased one.
SPLIT_MEANINGS = {
    "test": "held-out test split",
    "eval": "eval split, which chose the kept epoch: biased low",
}
NO_TEST_SPLIT = "no test split: this is the only perplexity"


def perplexities(evaluation: Optional[dict]) -> List[SplitPerplexity]:
    """The Evaluator's token-weighted perplexities, the held-out test split first, each
    saying what it is (the eval split's alone says that there is no test split)."""
    by_split = (evaluation or {}).get("perplexity", {})
    if isinstance(by_split, (int, float)):  # an evaluation.json from before the test split
        by_split = {"eval": {"perplexity": by_split, "tokens": evaluation.get("num_tokens", 0)}}
    rows = []
    for split, meaning in SPLIT_MEANINGS.items():
        if split in by_split:
            if split == "eval" and "test" not in by_split:
                meaning = f"{meaning}; {NO_TEST_SPLIT}"
            rows.append(SplitPerplexity(split, by_split[split]["perplexity"], by_split[split]["tokens"], meaning))
    return rows
