"""On JAX an epoch's last, smaller batch is padded to the full batch size with rows weighted
0, so the train and eval steps compile once, and the padding changes nothing learned or logged.

The loss and metric checks run here (TensorFlow backend); the fit runs in a child process
with KERAS_BACKEND=jax, as the Trainer's does.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from components.minigpt.losses import Perplexity, TokenCrossEntropy
from components.minigpt.sequences import PAD_ID, padded_batch
from tests.conftest import last_json_line, run_on_jax

# Three rows, two ending in [PAD]s: the per-token mask matters as well as the row weights.
LABELS = np.array([[5, 6, 7, 0, 0, 0], [7, 7, 9, 30, 12, 4], [8, 3, 0, 0, 0, 0]], dtype="int32")
FEATURES = np.concatenate([np.full((3, 1), 2, "int32"), LABELS[:, :-1]], axis=1)
BATCH = 5


def test_a_padded_batch_is_the_rows_then_pad_rows_weighted_zero():
    features, labels, weight = padded_batch(FEATURES, LABELS, BATCH)
    assert features.shape == labels.shape == (BATCH, 6) and weight.shape == (BATCH,)
    np.testing.assert_array_equal(features[:3], FEATURES)
    np.testing.assert_array_equal(labels[:3], LABELS)
    assert (features[3:] == PAD_ID).all() and (labels[3:] == PAD_ID).all()
    np.testing.assert_array_equal(weight, [1, 1, 1, 0, 0])
    full = padded_batch(FEATURES, LABELS, 3)  # a full batch: all weighted 1
    np.testing.assert_array_equal(full[1], LABELS)
    np.testing.assert_array_equal(full[2], [1, 1, 1])
    with pytest.raises(ValueError, match="do not fit"):
        padded_batch(FEATURES, LABELS, 2)


def _padded_logits(logits):
    """`logits` with two more rows, large and random: what the model says on [PAD] rows
    must not matter."""
    extra = np.random.default_rng(3).normal(scale=10.0, size=(BATCH - len(logits), *logits.shape[1:]))
    return np.concatenate([logits, extra.astype("float32")])


def test_rows_weighted_zero_change_neither_the_loss_nor_its_gradient():
    """The loss is the mean over the real rows' counted positions: not divided by the pad
    rows' positions (as Keras' default "sum_over_batch_size" would), and their logits get
    no gradient. Weights one per position weigh the same."""
    logits = np.random.default_rng(1).normal(size=(3, 6, 31)).astype("float32")
    _, labels, weight = padded_batch(FEATURES, LABELS, BATCH)
    padded = tf.constant(_padded_logits(logits))
    short = tf.constant(logits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([padded, short])
        expected = TokenCrossEntropy()(LABELS, short)
        got = TokenCrossEntropy()(labels, padded, sample_weight=weight)
        per_position = TokenCrossEntropy()(labels, padded, sample_weight=np.repeat(weight[:, None], 6, axis=1))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(per_position, expected, rtol=1e-6)
    gradient = tape.gradient(got, padded).numpy()
    np.testing.assert_allclose(gradient[:3], tape.gradient(expected, short).numpy(), rtol=1e-5, atol=1e-9)
    assert not gradient[3:].any()


def test_the_perplexity_counts_a_padded_batch_by_its_real_rows():
    """keras_hub's perplexity weighs each batch's mean cross-entropy by its rows: over a
    full batch and a padded partial one it is what the full and the short batch give."""
    rng = np.random.default_rng(2)
    full_labels = rng.integers(1, 31, size=(BATCH, 6)).astype("int32")
    full_labels[0, 2:] = PAD_ID
    full_logits = rng.normal(size=(BATCH, 6, 31)).astype("float32")
    logits = rng.normal(size=(3, 6, 31)).astype("float32")
    expected, got = Perplexity(from_logits=True, mask_token_id=PAD_ID), Perplexity(from_logits=True, mask_token_id=0)
    expected.update_state(full_labels, full_logits)
    expected.update_state(LABELS, logits)
    _, labels, weight = padded_batch(FEATURES, LABELS, BATCH)
    got.update_state(full_labels, full_logits, sample_weight=np.ones(BATCH))
    got.update_state(labels, _padded_logits(logits), sample_weight=weight)
    np.testing.assert_allclose(float(got.result()), float(expected.result()), rtol=1e-6)
    np.testing.assert_allclose(got.variables[1], 2 * BATCH - 2)  # rows: 5 + 3


JAX_FIT = """
import json, sys
import keras, numpy as np
from components.minigpt.model import GPTConfig
from components.minigpt.training import TrainingSettings, build_trainable_model
from components.trainer import fit
pad = json.loads(sys.argv[1])
fit.pads_partial_batches = lambda: pad  # the baseline: Keras' own short last batch
cfg = GPTConfig(vocabulary_size=31, seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
rng = np.random.default_rng(0)
def data(rows):
    labels = rng.integers(3, 31, size=(rows, 8)).astype("int32")
    labels[::3, 5:] = 0  # some rows end in [PAD]s
    return np.concatenate([np.full((rows, 1), 2, "int32"), labels[:, :-1]], axis=1), labels
train, val = data(10), data(7)  # batches of 4: 4 + 4 + 2 and 4 + 3
keras.utils.set_random_seed(0)
model = build_trainable_model(cfg, 1e-2, TrainingSettings("float32", None, 1))
traces = {"train": 0, "test": 0}
def counted(kind, step):
    def traced(*args):  # jax.jit runs the Python function once per program it compiles
        traces[kind] += 1
        return step(*args)
    return traced
model.train_step, model.test_step = counted("train", model.train_step), counted("test", model.test_step)
config = {"batch_size": 4, "seed": 0, "steps_per_epoch": None, "epochs": 2}
history = fit.fit_one_process(model, train, val, config, []).history
print(json.dumps({"history": history, "traces": traces, "weights": [w.tolist() for w in model.get_weights()]}))
"""


def _fit_on_jax(pad: bool) -> dict:
    return last_json_line(run_on_jax(JAX_FIT, json.dumps(pad)))


def test_on_jax_padding_compiles_one_program_per_step_and_fits_the_same():
    """Two epochs of the Trainer's fit, with validation, each epoch ending in a short batch:
    padded, one train and one eval program (the unpadded fit compiles two of each); the
    same logged loss, perplexity, val_loss and val_perplexity every epoch, and the same
    weights (the same gradients). Float32 sums over the zero rows in another order: the
    tolerances allow that rounding, far below what one pad row counted would change."""
    short, padded = _fit_on_jax(False), _fit_on_jax(True)
    assert short["traces"] == {"train": 2, "test": 2}
    assert padded["traces"] == {"train": 1, "test": 1}
    assert padded["history"].keys() == short["history"].keys() == {"loss", "perplexity", "val_loss", "val_perplexity"}
    for key, values in short["history"].items():
        np.testing.assert_allclose(padded["history"][key], values, rtol=1e-6, err_msg=key)
    for a, b in zip(padded["weights"], short["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
