"""Logging that outlives an MLflow tracking server outage.

Training must not be lost because the tracking server went away. `BufferedRun` forwards
logging calls to a `PipelineRun`. When a call fails and the server no longer answers,
it keeps that call and every later one, in order, and replays them as soon as the server
answers again. While the server is down, each call costs one quick probe (2 s at most,
no retries) rather than MLflow's retry chain. What is still unlogged when the Trainer
ends is reported in one line and listed in a JSON file in the Trainer's model_run folder.

Only an unreachable http(s) server is an outage: any other error (a bad value, a local
store that fails) is raised as before.
"""

from __future__ import annotations

import json
import logging
from typing import Any, List, Sequence, Tuple

from tfx.dsl.io import fileio

from components.tracking.mlflow_runs import PipelineRun, check_reachable

logger = logging.getLogger("components.tracking.buffered_run")

PROBE_TIMEOUT_S = 2
# A logging call: a PipelineRun method's name and its positional arguments.
Call = Tuple[str, Sequence[Any]]


class BufferedRun:
    """Forwards logging calls to `run`, keeping them in order while the server is down."""

    def __init__(self, run: PipelineRun, tracking_uri: str):
        self.run = run
        self._tracking_uri = tracking_uri
        self._pending: List[Call] = []
        self._outage = False

    def log(self, method: str, *args: Any) -> bool:
        """Calls `run.<method>(*args)` after every call still pending; True if all got through."""
        self._pending.append((method, args))
        return self.flush()

    def enqueue(self, calls: Sequence[Call]) -> None:
        """Calls another BufferedRun could not log (a child process's), to replay first:
        the server was down when that one ended, so this one probes before calling."""
        self._pending[:0] = [(method, tuple(args)) for method, args in calls]
        self._outage = self._outage or bool(calls)

    def flush(self) -> bool:
        """Replays the pending calls in order while the server answers; True if none is left."""
        if self._outage and self._pending:
            if check_reachable(self._tracking_uri, PROBE_TIMEOUT_S) is not None:
                return False
            logger.warning(
                "MLflow at %s answers again: replaying %d logging calls.", self._tracking_uri, len(self._pending)
            )
        self._outage = False
        while self._pending:
            method, args = self._pending[0]
            try:
                getattr(self.run, method)(*args)
            except Exception:  # pylint: disable=broad-except  (what the client raised; an outage is probed below)
                reason = check_reachable(self._tracking_uri, PROBE_TIMEOUT_S)
                if reason is None:
                    raise
                self._outage = True
                logger.warning(
                    "MLflow at %s stopped answering (%s): training goes on, and what it logs is kept and "
                    "replayed when the server answers again.",
                    self._tracking_uri,
                    reason,
                )
                return False
            self._pending.pop(0)
        return True

    @property
    def pending(self) -> List[Call]:
        """The calls not logged yet, JSON-serialisable where their arguments are."""
        return [(method, list(args)) for method, args in self._pending]

    def write_pending(self, path: str) -> None:
        """Lists the calls not logged in `path`, local or a URI (objects that JSON cannot
        hold by type name)."""
        with fileio.open(path, "w") as f:
            json.dump(
                [{"call": method, "args": args} for method, args in self.pending],
                f,
                indent=1,
                default=lambda value: f"<{type(value).__name__}>",
            )
