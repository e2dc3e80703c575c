"""A fit killed between epochs and resumed from Keras' `BackupAndRestore` ends as if it had
never stopped: the same batches, losses and weights, and the best epoch of the whole run.

Each fit builds and compiles its model anew after `keras.utils.set_random_seed`, as a
restarted process would; real Keras `fit`s of a tiny mini-GPT through the Trainer's own
loop (`fit_one_process`).
"""

import os

import keras
import numpy as np
import pytest

from components.minigpt.callbacks import BEST_EPOCH_FILE, EpochShuffle, KeepBestEpoch
from components.minigpt.model import GPTConfig, build_model
from components.minigpt.sequences import batches_per_epoch, features_from_labels
from components.minigpt.training import TrainingSettings, build_trainable_model, learning_rate_schedule
from components.trainer.fit import fit_one_process

GPT = GPTConfig(vocabulary_size=20, seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
SEED = 3
BATCH_SIZE = 8
FIRST_WORD, NUM_WORDS = 3, 17  # ids 3..19: no [PAD], [UNK] or [BOS]


def _counting(num_rows: int, step: int):
    """(features, labels): rows whose ids count up by `step`, from random starts."""
    starts = np.random.default_rng(step).integers(0, NUM_WORDS, num_rows)
    labels = FIRST_WORD + (starts[:, None] + step * np.arange(GPT.seq_len)) % NUM_WORDS
    return features_from_labels(labels.astype("int32"), bos_id=2), labels.astype("int32")


# 44 rows: five batches and a partial one. The model learns "count up by one", which
# makes it ever surer of the wrong next word on the validation rows (up by two): their
# perplexity is lowest after the first epoch and rises with every one after it.
TRAIN = _counting(44, step=1)
EVAL = _counting(16, step=2)


class _Killed(Exception):
    pass


class _KilledAt(keras.callbacks.Callback):
    """Stops the fit as 0-based `epoch` begins: killed after the one before was backed up."""

    def __init__(self, epoch: int):
        super().__init__()
        self._epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self._epoch:
            raise _Killed


class _Epochs(keras.callbacks.Callback):
    """Each epoch's logs and weights, by 1-based epoch."""

    def __init__(self):
        super().__init__()
        self.logs, self.weights = {}, {}

    def on_epoch_end(self, epoch, logs=None):
        self.logs[epoch + 1] = dict(logs)
        self.weights[epoch + 1] = self.model.get_weights()


def _train_cfg(epochs: int, steps_per_epoch=None):
    return {"batch_size": BATCH_SIZE, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "seed": SEED}


def _fit(train_cfg, callbacks) -> keras.Model:
    """A fit as a fresh process runs it: seeded, the model built and compiled anew."""
    keras.utils.set_random_seed(SEED)
    steps = train_cfg["steps_per_epoch"] or batches_per_epoch(len(TRAIN[1]), BATCH_SIZE)
    rate = learning_rate_schedule(0.01, "cosine", steps * train_cfg["epochs"])
    model = build_trainable_model(GPT, rate, TrainingSettings("float32", None, 1))
    fit_one_process(model, TRAIN, EVAL, train_cfg, callbacks)
    return model


def _backed_up(backup_dir, *callbacks):
    """The Trainer's order: the best epoch is kept before the backup says the epoch is done."""
    return [KeepBestEpoch("val_perplexity", backup_dir), keras.callbacks.BackupAndRestore(backup_dir), *callbacks]


def test_a_resumed_fit_keeps_the_best_epoch_of_the_whole_run(tmp_path):
    backup_dir = str(tmp_path / "backup")
    train_cfg = _train_cfg(epochs=4)
    before = _Epochs()
    with pytest.raises(_Killed):
        _fit(train_cfg, _backed_up(backup_dir, before, _KilledAt(2)))
    best_perplexity = before.logs[1]["val_perplexity"]
    assert best_perplexity < before.logs[2]["val_perplexity"]
    assert os.path.exists(os.path.join(backup_dir, BEST_EPOCH_FILE))

    after = _Epochs()
    best, backup, *_ = callbacks = _backed_up(backup_dir, after)
    model = _fit(train_cfg, callbacks)
    assert sorted(after.logs) == [3, 4]  # resumed after epoch 2
    assert min(logs["val_perplexity"] for logs in after.logs.values()) > best_perplexity
    assert (best.best_epoch, best.best_value) == (1, best_perplexity)
    for got, want in zip(model.get_weights(), before.weights[1]):
        np.testing.assert_array_equal(got, want)
    assert not os.path.exists(backup_dir)  # gone with Keras' backup, as the fit completed


def test_a_kill_while_the_best_epoch_is_written_leaves_the_previous_one(tmp_path, monkeypatch):
    model = build_model(GPT)
    best = KeepBestEpoch("val_perplexity", str(tmp_path))
    best.set_model(model)
    best.on_epoch_end(0, {"val_perplexity": 5.0})
    first = model.get_weights()
    model.set_weights([w + 1.0 for w in first])

    def killed(src, dst):  # after the new file is written, before it takes the old one's name
        raise _Killed

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(_Killed):
        best.on_epoch_end(1, {"val_perplexity": 4.0})
    monkeypatch.undo()

    resumed = KeepBestEpoch("val_perplexity", str(tmp_path))
    resumed.set_model(model)
    resumed.on_train_begin()
    resumed.on_train_end()
    assert (resumed.best_epoch, resumed.best_value) == (1, 5.0)
    for got, want in zip(model.get_weights(), first):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("steps_per_epoch", [None, 2])
def test_a_fit_killed_and_resumed_ends_as_one_never_killed(tmp_path, steps_per_epoch):
    """Levanter's promise: the same per-epoch losses and final weights. Keras' own
    `fit(shuffle=True)` on arrays broke it: on JAX (every epoch's order) and with
    `steps_per_epoch` on TensorFlow (where the epoch starts in the permutation)."""
    train_cfg = _train_cfg(epochs=3, steps_per_epoch=steps_per_epoch)
    straight = _Epochs()
    whole = _fit(train_cfg, [keras.callbacks.BackupAndRestore(str(tmp_path / "straight")), straight])

    backup_dir = str(tmp_path / "killed")
    killed, resumed = _Epochs(), _Epochs()
    with pytest.raises(_Killed):
        _fit(train_cfg, [keras.callbacks.BackupAndRestore(backup_dir), killed, _KilledAt(1)])
    model = _fit(train_cfg, [keras.callbacks.BackupAndRestore(backup_dir), resumed])

    assert (sorted(killed.logs), sorted(resumed.logs)) == ([1], [2, 3])
    pieced = {**killed.logs, **resumed.logs}
    for epoch, logs in straight.logs.items():
        for name, value in logs.items():
            np.testing.assert_allclose(pieced[epoch][name], value, rtol=1e-5, atol=1e-6, err_msg=f"{epoch} {name}")
    for got, want in zip(model.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_each_epoch_reads_every_row_once_in_an_order_drawn_from_the_seed_and_epoch():
    rows = np.arange(20)[:, None]
    shuffle = EpochShuffle(rows, rows * 10, batch_size=8, seed=SEED)

    def read(epoch, shuffle=shuffle):
        shuffle.on_epoch_begin(epoch)
        batches = [shuffle.batches[i] for i in range(len(shuffle.batches))]
        assert all(np.array_equal(labels, features * 10) for features, labels in batches)
        return [features.ravel().tolist() for features, _ in batches]

    first, second = read(0), read(1)
    assert [len(batch) for batch in first] == [8, 8, 4]  # the last partial batch kept
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(20))
    assert first != second
    assert read(1, EpochShuffle(rows, rows * 10, 8, SEED)) == second  # another process: the same order
    assert read(1, EpochShuffle(rows, rows * 10, 8, SEED, max_steps=2)) == second[:2]
