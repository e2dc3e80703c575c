"""The loss and metric the Trainer compiles compute what the reference's Keras ones do."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from components.minigpt.losses import Perplexity, TokenCrossEntropy, counted_positions, token_cross_entropy
from components.minigpt.model import GPTConfig, build_model, compile_model

TINY = GPTConfig(vocabulary_size=31, seq_len=16, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
# Two sequences, the first ending in [PAD]s: the model's mask and the metric's both matter.
FEATURES = np.array([[2, 5, 6, 7, 0, 0], [2, 7, 7, 9, 30, 12]], dtype="int32")
LABELS = np.array([[5, 6, 7, 0, 0, 0], [7, 7, 9, 30, 12, 4]], dtype="int32")


def value_and_grad(fn, logits, labels):
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        # Unequal weights per position, as a masked mean sends back.
        loss = tf.reduce_sum(fn(labels, z) * tf.range(1.0, 1.0 + np.prod(labels.shape[:2]), dtype="float32")[None])
    return float(loss), tape.gradient(loss, z)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_token_cross_entropy_is_keras_sparse_crossentropy_with_its_gradient(dtype):
    rng = np.random.default_rng(0)
    logits = tf.cast(rng.normal(scale=4.0, size=(1, 12, 50)).astype("float32"), dtype)
    labels = rng.integers(0, 50, size=(1, 12)).astype("int32")
    keras_ce = lambda y, z: keras.losses.sparse_categorical_crossentropy(y, tf.cast(z, "float32"), from_logits=True)  # noqa: E731
    ours_loss, ours_grad = value_and_grad(token_cross_entropy, logits, labels)
    ref_loss, ref_grad = value_and_grad(keras_ce, logits, labels)
    assert ours_grad.dtype == logits.dtype
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(tf.cast(ours_grad, "float32"), tf.cast(ref_grad, "float32"), rtol=1e-2, atol=1e-6)
    # Labels as (B, T, 1), which Keras' loss accepts too.
    np.testing.assert_allclose(token_cross_entropy(labels[..., None], logits), keras_ce(labels, logits), rtol=1e-6)


def test_a_label_whose_probability_underflows_gets_its_exact_loss():
    """p = e^-200 is 0 in float32: -log p would be inf; logsumexp - logit is 200."""
    logits = np.zeros((1, 2, 4), dtype="float32")
    logits[0, 0, 1] = 200.0
    labels = np.array([[0, 3]], dtype="int32")
    loss, grad = value_and_grad(token_cross_entropy, logits, labels)
    expected = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    np.testing.assert_allclose(token_cross_entropy(labels, logits), expected, rtol=1e-6)
    assert np.isfinite(loss) and np.isfinite(grad.numpy()).all()


LEARNING_RATE = 1e-2


def compiled(reference_loss: bool, jit_compile: bool = False) -> keras.Model:
    keras.utils.set_random_seed(5)
    model = build_model(TINY)
    compile_model(model, LEARNING_RATE, jit_compile, reference_loss=reference_loss)
    return model


def compiled_loss_gradients(model: keras.Model, jit_compile: bool):
    """The gradients of the model's compiled loss, as its train step takes them: the
    model's [PAD] mask reaches the loss, in a graph or XLA-compiled."""

    @tf.function(jit_compile=jit_compile)
    def gradients():
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=FEATURES, y=LABELS, y_pred=model(FEATURES, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return [tf.convert_to_tensor(g).numpy() for g in gradients()]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_compiled_loss_and_perplexity_train_as_the_reference_ones(tmp_path, jit_compile):
    """Same seed, same batches with [PAD], in a TensorFlow graph or XLA-compiled
    (`train.jit_compile`): the same gradients, the same logged loss and perplexity and the
    same weights after two Adam steps; and a compiled model saved to .keras loads them back.

    Tolerances are what float32 allows on any CPU class, not what one CPU gives: XLA's
    and oneDNN's kernels sum in another order on AVX2 than on AVX-512. Gradients are
    compared on the scale of the largest one (float32's rounding grows with the terms
    summed): some are exactly 0 in exact arithmetic (attention is blind to the key
    projection's bias), so what they hold is rounding noise, ~1e-11 here. Adam divides
    each gradient by its own root mean square, which turns such noise into steps of up
    to ~1e-6 (seen on AVX2, where one of these weights differed by 1e-6 after two
    steps); the weights are therefore compared on the scale of the learning rate, and
    the gradients and logged values are what catch a wrong loss.
    """
    ours, reference = compiled(False, jit_compile), compiled(True)
    assert isinstance(ours.loss, TokenCrossEntropy)
    assert isinstance(reference.loss, keras.losses.SparseCategoricalCrossentropy)
    our_grads, reference_grads = compiled_loss_gradients(ours, jit_compile), compiled_loss_gradients(reference, False)
    scale = max(np.abs(g).max() for g in reference_grads)
    for a, b in zip(our_grads, reference_grads):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)

    before = [w.copy() for w in ours.get_weights()]
    for _ in range(2):
        our_log = ours.train_on_batch(FEATURES, LABELS, return_dict=True)
        reference_log = reference.train_on_batch(FEATURES, LABELS, return_dict=True)
        assert our_log.keys() == reference_log.keys() == {"loss", "perplexity"}
        for key in our_log:
            np.testing.assert_allclose(our_log[key], reference_log[key], rtol=1e-5)
    assert max(np.abs(a - start).max() for a, start in zip(ours.get_weights(), before)) > LEARNING_RATE
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=0.05 * LEARNING_RATE)

    ours.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, TokenCrossEntropy)
    np.testing.assert_allclose(
        loaded.evaluate(FEATURES, LABELS, verbose=0), ours.evaluate(FEATURES, LABELS, verbose=0), rtol=1e-6
    )


def test_perplexity_metric_is_keras_hubs():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 6, 31)).astype("float32")
    ours = Perplexity(from_logits=True, mask_token_id=0)
    reference = keras_hub.metrics.Perplexity(from_logits=True, mask_token_id=0)
    for metric in (ours, reference):
        metric.update_state(LABELS, logits)
    np.testing.assert_allclose(float(ours.result()), float(reference.result()), rtol=1e-6)
    assert Perplexity.from_config(ours.get_config()).get_config() == ours.get_config()


def test_the_counted_positions_are_those_whose_feature_is_not_pad():
    """The embedding's `mask_zero` mask, from the labels: every token and the first [PAD]."""
    np.testing.assert_array_equal(counted_positions(LABELS), FEATURES != 0)
    np.testing.assert_array_equal(counted_positions(LABELS[..., None]), (FEATURES != 0)[..., None])


def test_the_loss_masks_its_positions_itself_as_keras_masks_the_references():
    """The reference's loss averages over the mask Keras carries on the model's logits; ours
    gives that value whether or not the logits carry one."""
    keras.utils.set_random_seed(5)
    logits = build_model(TINY)(FEATURES)
    unmasked = tf.identity(logits)  # the same values without Keras' mask
    expected = token_cross_entropy(LABELS, logits).numpy()[FEATURES != 0].mean()
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(reference(LABELS, logits), expected, rtol=1e-6)
    assert not np.isclose(reference(LABELS, unmasked), expected, rtol=1e-3)  # every position
    for value in (TokenCrossEntropy()(LABELS, logits), TokenCrossEntropy()(LABELS, unmasked)):
        np.testing.assert_allclose(value, expected, rtol=1e-6)
