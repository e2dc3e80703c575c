"""Training callbacks that are pure Keras (any backend).

Files go through `keras.src.utils.file_utils`, the helpers Keras' own `BackupAndRestore`
uses: plain `open`/`os` for a local path, TensorFlow's gfile (imported only then) for a
`gs://` one, so this module imports no TensorFlow on the JAX backend.
"""

from __future__ import annotations

import io
import math
import os
from typing import Dict, Optional

import keras
import numpy as np
from keras.src.utils import file_utils

from components.minigpt.sequences import epoch_order, padded_batch
from components.runtime import interrupt

# In the BackupAndRestore folder: the kept epoch, its monitored value and its weights.
BEST_EPOCH_FILE = "best_epoch.npz"


class KeepBestEpoch(keras.callbacks.Callback):
    """At the end of training, puts back the weights of the epoch with the lowest `monitor`.

    A small corpus overfits before the last epoch (val perplexity rises while the loss
    falls); the model to export and evaluate is the best one seen, not the last.
    Keras' EarlyStopping restores only when it stops early, so this keeps its own copy.

    With `backup_dir`, the folder of the `BackupAndRestore` the fit resumes with, the best
    epoch so far is also kept there (`BEST_EPOCH_FILE`) and read back when training
    begins, so a resumed run still picks the best epoch of the whole run, not only of the
    epochs since the resume. Keras deletes that folder when a fit completes (its
    `delete_checkpoint`, True by default) and keeps it otherwise; the file goes or stays
    with it. Put this callback before the `BackupAndRestore` in `fit`'s callbacks: a run
    killed between the two then reruns that epoch rather than skipping its weights.
    """

    def __init__(self, monitor: str = "val_perplexity", backup_dir: Optional[str] = None):
        super().__init__()
        self.monitor = monitor
        self.best_epoch: Optional[int] = None  # 1-based
        self.best_value = float("inf")
        self._best_weights = None
        self._backup_dir = backup_dir

    def on_train_begin(self, logs: Dict[str, float] = None) -> None:
        path = self._backup_path()
        if path and file_utils.exists(path):
            with file_utils.File(path, "rb") as f:
                kept = np.load(io.BytesIO(f.read()))
            self.best_epoch, self.best_value = int(kept["epoch"]), float(kept["value"])
            self._best_weights = [kept[f"weight_{i}"] for i in range(len(kept.files) - 2)]  # all but those two

    def on_epoch_end(self, epoch: int, logs: Dict[str, float] = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best_value:
            self.best_epoch, self.best_value = epoch + 1, float(value)
            self._best_weights = self.model.get_weights()
            if self._backup_dir:
                self._write_backup()

    def on_train_end(self, logs: Dict[str, float] = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    def _backup_path(self) -> Optional[str]:
        return file_utils.join(self._backup_dir, BEST_EPOCH_FILE) if self._backup_dir else None

    def _write_backup(self) -> None:
        """Replaces the kept file whole, so a kill mid-write leaves the previous best.

        A local file is written beside it and renamed over it (`os.replace`, atomic on
        POSIX; no fsync: this survives a killed process, not a power cut, like Keras' own
        backup). A `gs://` object is uploaded in place: Cloud Storage makes a new object
        visible only once its upload completes.
        """
        buffer = io.BytesIO()
        weights = {f"weight_{i}": w for i, w in enumerate(self._best_weights)}
        np.savez(buffer, epoch=self.best_epoch, value=self.best_value, **weights)
        if not file_utils.exists(self._backup_dir):
            file_utils.makedirs(self._backup_dir)
        path = self._backup_path()
        if file_utils.is_remote_path(path):
            with file_utils.File(path, "wb") as f:
                f.write(buffer.getvalue())
            return
        temporary = f"{path}.tmp"
        with open(temporary, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(temporary, path)


class EpochShuffle(keras.callbacks.Callback):
    """Feeds `fit` its rows in an order drawn from the seed and the epoch alone, so that a
    run resumed from a `BackupAndRestore` backup sees the batches of a run never stopped.

    Keras' `fit(shuffle=True)` on arrays does not (Keras 3.12): on TensorFlow, after
    `keras.utils.set_random_seed`, its tf.data shuffle gives every epoch the first
    epoch's order; on JAX it draws from NumPy's global generator, which a restarted
    process resets; and with `steps_per_epoch` an epoch goes on where the last stopped,
    in a permutation the restarted process does not have. Here epoch e's batches are the
    first `max_steps` of `sequences.epoch_order` (the order `multiprocess.epoch_batches`
    draws too), the last partial batch kept.
    Give `fit` `batches` with `shuffle=False` (else Keras shuffles the batch order from
    Python's global seed) and this callback, which draws each order as its epoch begins,
    before `fit` reads a batch of it. `pad`: as `RowBatches`'.
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        max_steps: Optional[int] = None,
        pad: bool = False,
    ):
        super().__init__()
        self.batches = RowBatches(features, labels, batch_size, max_steps, pad)
        self._seed = seed

    def on_epoch_begin(self, epoch: int, logs: Dict[str, float] = None) -> None:
        self.batches.order = epoch_order(len(self.batches.labels), self._seed, epoch)


class RowBatches(keras.utils.PyDataset):
    """(features, labels) batches of the rows in `order`, the last partial batch kept: what
    `EpochShuffle` feeds `fit` (its epoch's order), and validation batches (in order).

    `pad`: every batch is (features, labels, sample_weight) of `batch_size` rows, the
    last padded with rows weighted 0 (`sequences.padded_batch`), so that a compiled step
    sees one shape (`training.pads_partial_batches`).
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        max_steps: Optional[int] = None,
        pad: bool = False,
    ):
        super().__init__()
        self.features, self.labels, self.batch_size, self.pad = features, labels, batch_size, pad
        self._num_batches = min(math.ceil(len(labels) / batch_size), max_steps or math.inf)
        # Until the first epoch begins: Keras reads two batches for their shapes before it.
        self.order = np.arange(len(labels))

    def __len__(self) -> int:
        return self._num_batches

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.pad:
            return padded_batch(self.features[rows], self.labels[rows], self.batch_size)
        return self.features[rows], self.labels[rows]


class RaiseOnInterrupt(keras.callbacks.Callback):
    """Stops training at the next batch after a Ctrl-C that Python dropped on the way
    (see `components.runtime.interrupt`); without `interrupt.install` it never fires."""

    def on_train_batch_end(self, batch: int, logs: Dict[str, float] = None) -> None:
        interrupt.raise_if_requested()
