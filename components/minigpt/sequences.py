"""Language-model examples from token ids, in NumPy (no TensorFlow: any Keras backend).

A line's ids are its labels; its features are [BOS] followed by the labels shifted one
step right, so the model predicts labels[t] from features[: t + 1]. This is what the
reference's `StartEndPacker(start_value=BOS)` over the tokenizer output produces.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

PAD_ID = 0  # [PAD] is always token 0: WordPieceTokenizer and the masks rely on it.


def features_from_labels(labels: np.ndarray, bos_id: int) -> np.ndarray:
    """(N, T) labels, [PAD]-padded -> (N, T) features: [BOS] + labels[:, :-1]."""
    bos = np.full((labels.shape[0], 1), bos_id, dtype=labels.dtype)
    return np.concatenate([bos, labels[:, :-1]], axis=1)


def canonical_order(labels: np.ndarray) -> np.ndarray:
    """The rows sorted by their ids, so that the order Beam wrote them in does not matter.

    Training shuffles with a fixed seed; starting from the same order makes two runs on
    the same data see the same batches.
    """
    if len(labels) == 0:
        return labels
    return labels[np.lexsort(labels.T[::-1])]


def epoch_order(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the rows in epoch `epoch`: drawn from the seed and the epoch alone, so
    every process of a multi-process job, and a run resumed in a new process, draw it alike."""
    return np.random.default_rng([seed, epoch]).permutation(num_rows)


def evenly_spaced(num_rows: int, count: int) -> np.ndarray:
    """Indices of `count` rows spread evenly over `num_rows` (all rows when count >= num_rows).

    Rows are in `canonical_order`, sorted by their ids: the first ones share their first
    tokens, so a subset for a quick score (a perplexity, a prompt) is taken across them.
    """
    if count >= num_rows:
        return np.arange(num_rows)
    return np.linspace(0, num_rows - 1, num=count).round().astype(int)


def spread_batches(labels: np.ndarray, num_batches: Optional[int], batch_size: int) -> np.ndarray:
    """`num_batches` batches' worth of evenly spaced rows (`evenly_spaced`), or all the
    rows when `num_batches` is None: what `eval.max_batches` and `train.validation_steps` score."""
    if num_batches is None:
        return labels
    return labels[evenly_spaced(len(labels), num_batches * batch_size)]


def batches_per_epoch(
    num_rows: int, batch_size: int, keep_partial: bool = True, max_steps: Optional[int] = None
) -> int:
    """Steps in one pass over `num_rows` rows (what a learning-rate schedule counts): Keras'
    `fit` keeps the last partial batch, the multi-process loop drops it
    (`multiprocess.epoch_batches`); `train.steps_per_epoch` (`max_steps`) caps it, and
    cannot add batches the data does not have."""
    whole, partial = divmod(num_rows, batch_size)
    count = whole + (1 if partial and keep_partial else 0)
    return min(count, max_steps) if max_steps else count


def padded_batch(
    features: np.ndarray, labels: np.ndarray, batch_size: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, sample_weight) of exactly `batch_size` rows: the given rows, each
    weighted 1, then rows of [PAD] weighted 0.

    A compiled step (JAX's `jax.jit`) is compiled once per input shape, so an epoch's
    last, smaller batch would compile a second program; padded, it runs the first. The
    weights are one per row: the loss, the perplexity metric and the logged loss leave
    the zero-weighted rows out (`losses.TokenCrossEntropy`, `losses.Perplexity`,
    `training.count_real_rows`), so the padded batch computes what the short one did.
    """
    rows, missing = len(labels), batch_size - len(labels)
    if missing < 0:
        raise ValueError(f"{rows} rows do not fit in a batch of {batch_size}")
    weight = np.concatenate([np.ones(rows, "float32"), np.zeros(missing, "float32")])
    if missing:
        features = np.concatenate([features, np.full((missing, *features.shape[1:]), PAD_ID, features.dtype)])
        labels = np.concatenate([labels, np.full((missing, *labels.shape[1:]), PAD_ID, labels.dtype)])
    return features, labels, weight


def batches(features: np.ndarray, labels: np.ndarray, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(features, labels) in order, `batch_size` rows at a time (the last may be short)."""
    for start in range(0, len(labels), batch_size):
        yield features[start : start + batch_size], labels[start : start + batch_size]
