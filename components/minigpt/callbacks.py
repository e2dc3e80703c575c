"""Training callbacks that are pure Keras (any backend)."""

from __future__ import annotations

from typing import Dict, Optional

import keras

from components import interrupt


class KeepBestEpoch(keras.callbacks.Callback):
    """At the end of training, puts back the weights of the epoch with the lowest `monitor`.

    A small corpus overfits before the last epoch (val perplexity rises while the loss
    falls); the model to export and evaluate is the best one seen, not the last.
    Keras' EarlyStopping restores only when it stops early, so this keeps its own copy.
    After a resume from BackupAndRestore it knows only the epochs run since the resume.
    """

    def __init__(self, monitor: str = "val_perplexity"):
        super().__init__()
        self.monitor = monitor
        self.best_epoch: Optional[int] = None  # 1-based
        self.best_value = float("inf")
        self._best_weights = None

    def on_epoch_end(self, epoch: int, logs: Dict[str, float] = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best_value:
            self.best_epoch, self.best_value = epoch + 1, float(value)
            self._best_weights = self.model.get_weights()

    def on_train_end(self, logs: Dict[str, float] = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class RaiseOnInterrupt(keras.callbacks.Callback):
    """Stops training at the next batch after a Ctrl-C that Python dropped on the way
    (see `components.interrupt`); without `interrupt.install` it never fires."""

    def on_train_batch_end(self, batch: int, logs: Dict[str, float] = None) -> None:
        interrupt.raise_if_requested()
