"""A progress line from a long Beam step at most every ~10 s: what a person watching a
run on a big corpus wants to know (it is moving, and how far it got).

Each worker counts what its DoFn handled and logs `<step>: <n> <unit> so far` when at
least `interval_s` passed since its last line; a small corpus finishes before the first.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

logger = logging.getLogger("components.runtime.progress")
INTERVAL_S = 10.0


class Progress:
    """Counts elements of one step on one worker; logs the running total now and then."""

    def __init__(self, step: str, unit: str, interval_s: Optional[float] = None):
        self._step, self._unit = step, unit
        self._interval_s = INTERVAL_S if interval_s is None else interval_s
        self._count = 0
        self._last = time.monotonic()

    def add(self, n: int = 1) -> None:
        self._count += n
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            logger.info("%s: %s %s so far", self._step, f"{self._count:,}", self._unit)
