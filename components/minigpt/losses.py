"""The reference's loss and perplexity metric, with a cross-entropy that is faster on CPUs.

The keras.io example trains with `SparseCategoricalCrossentropy(from_logits=True)` and
reports keras_hub's `Perplexity`. On TensorFlow both run the fused
`SparseSoftmaxCrossEntropyWithLogits` kernel, whose CPU implementation (Eigen) is slow:
over the 64 x 128 x 5000 bf16 logits, forward and gradient took 224 ms where one oneDNN
softmax and the textbook gradient take 89 ms, and the bf16 training step went from 595 to
426 ms (BENCHMARKS.md §1). The classes here are the reference's, computing the same
values through `token_cross_entropy`, over the positions `counted_positions` names.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np

from components.minigpt.sequences import PAD_ID

# Below the smallest normal float32 a softmax probability has lost its precision (or is 0):
# the loss of such a label is computed from the logits instead.
_TINY = float(np.finfo("float32").tiny)


def counted_positions(labels):
    """1.0 where the loss counts a position of (B, T) labels, else 0.0: where the feature is
    not [PAD].

    The features are [BOS] + labels[:, :-1] (`sequences.features_from_labels`), so this is
    position 0 and every position after a non-[PAD] label: each token and the first [PAD],
    which is how the model learns to end a paragraph. It is the mask the embedding's
    `mask_zero` puts on the features, which the reference's loss gets only if Keras
    carries it through every layer to the logits: Keras 3.12 and 3.15 do, while warning
    that layers inside them (`PositionEmbedding`, the attention's `EinsumDense`) drop it.
    A Keras loss sees labels, not features, hence the shift. Labels may also be (B, T, 1).
    """
    labels = keras.ops.convert_to_tensor(labels)
    after_token = keras.ops.cast(keras.ops.not_equal(labels[:, :-1], PAD_ID), "float32")
    return keras.ops.concatenate([keras.ops.ones_like(after_token[:, :1]), after_token], axis=1)


def token_cross_entropy(labels, logits):
    """Cross-entropy of each integer label under `logits` (..., V), in float32.

    The values of `keras.losses.sparse_categorical_crossentropy(labels, logits,
    from_logits=True)`. On TensorFlow it is computed from one softmax, -log p[label], with
    the gradient softmax - one_hot; a label whose probability underflows float32 (a loss
    above ~87 nats) gets the exact logsumexp - logit instead. Other backends keep Keras'
    own formulation: they compile the whole step with XLA, which fuses it.
    """
    if keras.backend.backend() != "tensorflow":
        logits = keras.ops.cast(logits, "float32")
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return _softmax_cross_entropy_tensorflow(labels, logits)


def _softmax_cross_entropy_tensorflow(labels, logits):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    labels, logits = tf.cast(labels, "int32"), tf.convert_to_tensor(logits)
    if labels.shape.rank == logits.shape.rank:  # (B, T, 1), which Keras' loss also accepts
        labels = tf.squeeze(labels, -1)
    rank = labels.shape.rank

    @tf.custom_gradient
    def cross_entropy(logits):
        z = tf.cast(logits, "float32")
        probs = tf.nn.softmax(z)  # oneDNN's kernel on CPUs
        p_label = tf.gather(probs, labels, batch_dims=rank)
        loss = tf.cond(
            tf.reduce_all(p_label >= _TINY),
            lambda: -tf.math.log(p_label),
            lambda: tf.reduce_logsumexp(z, -1) - tf.gather(z, labels, batch_dims=rank),
        )

        def grad(upstream):
            one_hot = tf.one_hot(labels, tf.shape(probs)[-1], dtype=probs.dtype)
            return tf.cast((probs - one_hot) * upstream[..., None], logits.dtype)

        return loss, grad

    return cross_entropy(logits)


def per_position(sample_weight, positions):
    """`sample_weight`, one per row (B,) or per position, shaped to multiply `positions`
    (B, T) or (B, T, 1) in float32: a row's weight on each of its positions."""
    sample_weight = keras.ops.cast(sample_weight, "float32")
    for _ in range(len(positions.shape) - len(sample_weight.shape)):
        sample_weight = keras.ops.expand_dims(sample_weight, -1)
    return sample_weight


def weighted_rows(sample_weight):
    """How many rows of a batch have a nonzero `sample_weight` (per row, or per position):
    the rows it really has, those `sequences.padded_batch` did not add."""
    weight = keras.ops.convert_to_tensor(sample_weight)
    if len(weight.shape) > 1:
        weight = keras.ops.max(keras.ops.abs(weight), axis=tuple(range(1, len(weight.shape))))
    return keras.ops.sum(keras.ops.cast(keras.ops.not_equal(weight, 0), "float32"))


@keras.saving.register_keras_serializable(package="minigpt")
class TokenCrossEntropy(keras.losses.Loss):
    """The reference's `SparseCategoricalCrossentropy(from_logits=True)` over the model's
    [PAD] mask, computed by `token_cross_entropy`, the mask made explicit.

    Every position's loss is weighted by `counted_positions` (times any `sample_weight`,
    one per row or one per position), and the default reduction divides by the weights'
    sum: the mean over the counted positions, the value Keras' masked mean gives the
    reference (up to its epsilon), on any Keras version and on paths that never see a
    Keras mask (`multiprocess`). Where Keras does carry the mask, it multiplies the same
    0/1 weights again: no change. Rows weighted 0 (`sequences.padded_batch`) are in
    neither the sum nor the divisor, so they change neither the loss nor its gradient
    (Keras' default "sum_over_batch_size" would divide by them too).
    """

    def __init__(self, reduction="mean_with_sample_weight", name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        weight = counted_positions(y_true)
        if sample_weight is not None:
            weight = weight * per_position(sample_weight, weight)
        return super().__call__(y_true, y_pred, sample_weight=weight)

    def call(self, y_true, y_pred):
        return token_cross_entropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="minigpt")
class Perplexity(keras_hub.metrics.Perplexity):
    """The reference's metric, keras_hub 0.25's `Perplexity` (the version the reference
    runs on), its cross-entropy from logits computed by `TokenCrossEntropy`. In a compiled
    step TensorFlow then computes one softmax for the loss and the metric together (its
    graph optimizer merges the two). The metric's own mask, labels that are not [PAD],
    lies within `counted_positions` (the [PAD]s end a row), so the loss's weights do not
    change it.

    Its definition is written out here rather than inherited, because keras_hub changed
    it: each batch's mean cross-entropy over its counted tokens, averaged over batches by
    their rows (keras_hub 0.25); keras_hub 0.32, which the GPU machine runs, averages over
    all tokens instead. A `sample_weight` (one per row, or per position) weighs the
    tokens, and a batch counts as many rows as have a nonzero weight: the rows
    `sequences.padded_batch` adds (weight 0) leave the epoch's perplexity unchanged."""

    def __init__(self, from_logits=False, **kwargs):
        super().__init__(from_logits=from_logits, **kwargs)
        if from_logits:
            self._crossentropy = TokenCrossEntropy(reduction="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = keras.ops.cast(y_true, self.dtype), keras.ops.cast(y_pred, self.dtype)
        if sample_weight is None:
            weight = keras.ops.ones_like(y_true)
            rows = keras.ops.cast(keras.ops.shape(y_true)[0], self.dtype)
        else:
            weight = keras.ops.broadcast_to(per_position(sample_weight, y_true), keras.ops.shape(y_true))
            rows = weighted_rows(sample_weight)
        if self.mask_token_id is not None:
            weight = weight * keras.ops.cast(keras.ops.not_equal(y_true, self.mask_token_id), self.dtype)
        crossentropy = keras.ops.cast(self._crossentropy(y_true, y_pred, sample_weight=weight), self.dtype)
        self._aggregate_crossentropy.assign_add(rows * crossentropy / keras.ops.sum(weight))
        self._number_of_samples.assign_add(rows)
