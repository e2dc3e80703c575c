"""Ctrl-C that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT
arrives. Inside a finalizer or a weakref callback (TensorFlow and SQLAlchemy run many
during training) the exception is printed as "Exception ignored" and dropped, and the
run goes on. `install` makes SIGINT also leave a mark, and the training loop raises it
again at its next batch (`raise_if_requested`), so a Ctrl-C always stops the run.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _on_sigint(signum, frame) -> None:  # pylint: disable=unused-argument
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Routes SIGINT through `_on_sigint` (call from the main thread, as signal requires)."""
    _requested.clear()
    signal.signal(signal.SIGINT, _on_sigint)


def raise_if_requested() -> None:
    """Raises KeyboardInterrupt if SIGINT arrived since `install`, wherever it was dropped."""
    if _requested.is_set():
        raise KeyboardInterrupt
