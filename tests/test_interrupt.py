"""A Ctrl-C that Python drops inside a finalizer still stops training at the next batch."""

import os
import signal
import sys

import keras
import numpy as np
import pytest

from components.minigpt.callbacks import RaiseOnInterrupt
from components.runtime import interrupt


class _SigintWhenCollected:
    """Sends this process SIGINT from its finalizer: the handler then runs inside
    `__del__`, where Python prints its KeyboardInterrupt as "Exception ignored" and goes on."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)


class _BatchCount(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.fixture
def sigint_routed():
    previous = signal.getsignal(signal.SIGINT)
    interrupt.install()
    yield
    interrupt.install()  # clears the mark, so that no later test's training stops
    signal.signal(signal.SIGINT, previous)


def _fit(callbacks):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((8, 4), dtype="float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=1, verbose=0, callbacks=callbacks)


def test_a_sigint_dropped_in_a_finalizer_stops_training_at_the_next_batch(sigint_routed, monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    _SigintWhenCollected()  # collected at once: the interrupt is raised in __del__ and dropped
    assert dropped == [KeyboardInterrupt]  # Python went on as if nothing had happened
    count = _BatchCount()
    with pytest.raises(KeyboardInterrupt):
        _fit([RaiseOnInterrupt(), count])
    assert count.batches == 0  # raised at the end of the first batch, before the callbacks after it


def test_an_ordinary_sigint_still_raises_where_it_lands_and_training_without_one_runs(sigint_routed):
    count = _BatchCount()
    _fit([RaiseOnInterrupt(), count])
    assert count.batches == 4
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
