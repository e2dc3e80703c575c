"""Token-weighted perplexity: exp(total NLL / number of non-[PAD] target tokens).

keras_hub's `Perplexity` metric (0.25) averages per-batch means weighted by sequences,
which over-weights short batches; this sums over tokens instead.
"""

from __future__ import annotations

import math
from typing import Iterable, Tuple

import keras

from components.minigpt.losses import token_cross_entropy
from components.minigpt.model import PAD_ID


def nll_and_count(model: keras.Model, features, labels) -> Tuple[float, int]:
    """Summed negative log-likelihood of the non-[PAD] labels, and how many there are."""
    logits = model(features, training=False)  # (B, T, V)
    nll = token_cross_entropy(labels, logits)  # (B, T)
    mask = keras.ops.cast(keras.ops.not_equal(labels, PAD_ID), nll.dtype)
    return float(keras.ops.sum(nll * mask)), int(keras.ops.sum(mask))


def token_weighted_perplexity(model: keras.Model, batches: Iterable) -> Tuple[float, int]:
    """(perplexity, number of target tokens) over (features, labels) batches."""
    total_nll, total_tokens = 0.0, 0
    for features, labels in batches:
        nll, count = nll_and_count(model, features, labels)
        total_nll += nll
        total_tokens += count
    if total_tokens == 0:
        raise ValueError("No non-[PAD] tokens to evaluate perplexity on.")
    return math.exp(total_nll / total_tokens), total_tokens
