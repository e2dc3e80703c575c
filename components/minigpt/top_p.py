"""Exact top-p (nucleus) sampling that sorts a few dozen candidates, not the vocabulary.

keras_hub's `TopPSampler` sorts all probabilities every step (5,000 for the reference
model), the slowest sampler in the cached decode. The nucleus is only the smallest set of
top tokens whose mass exceeds p, a few dozen tokens for a trained model at p = 0.5
(at most 60 of 4,558 measured on the pipeline's trained model). So each step takes the
top `candidates` tokens; only when some row's candidates hold no more than p of the mass
does the step sort all tokens, for every row, in an `ops.cond` branch that the compiled
decode (XLA on TensorFlow, `jax.jit` on JAX) runs only then.

Both branches draw the token the same way from the same random number: one uniform
per row, mapped through the nucleus's cumulative mass in sorted order (inverse CDF).
A row whose nucleus fits in the candidates gets the same token from either branch,
since the candidates are the full sort's first entries (`top_k` puts the lower index
first among equal probabilities) and their cumulative sums are the same prefix. So
the number of candidates changes the speed, never the tokens.

The distribution is keras_hub's: the same nucleus (sorted tokens up to and including
the first whose cumulative mass exceeds p; all of them if none does), renormalized.
keras_hub draws with `random.categorical` over all sorted tokens, whose random numbers
depend on how many tokens it draws over; the inverse-CDF draw does not, which is what
makes the two branches agree. The same seed thus gives other tokens than keras_hub's
sampler, from the same distribution.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras_hub
from keras import ops, random

# Measured on the pipeline's trained model at p = 0.5: the nucleus held at most 60
# tokens, 32 candidates sent 65 % of batch-16 steps to the full sort, 64 none.
DEFAULT_CANDIDATES = 64


def _first_true(mask, fill: int):
    """Index of each row's first True in `mask` (B, L), `fill` where a row has none.

    A min over positions, not `argmax`, whose choice among ties is not guaranteed."""
    positions = ops.arange(ops.shape(mask)[-1], dtype="int32")
    return ops.min(ops.where(mask, positions, fill), axis=-1)


def _top(probabilities, count: int, head: int):
    """The `count` most probable tokens of each row: their cumulative mass in descending
    order of probability, and their ids, both (B, count).

    The first `head` (<= count) cumulative sums are summed over those `head` values alone,
    the rest continue from them: XLA's cumsum rounds a long row's prefix differently
    from the same values summed alone (measured on TensorFlow), and the candidates' sums
    must equal the full sort's to the bit.
    """
    values, indices = ops.top_k(probabilities, k=count, sorted=True)
    cumulative = ops.cumsum(values[:, :head], axis=-1)
    if count > head:
        rest = ops.cumsum(values[:, head:], axis=-1) + cumulative[:, -1:]
        cumulative = ops.concatenate([cumulative, rest], axis=-1)
    return cumulative, indices


def _nucleus_draw(cumulative, sorted_indices, p: float, uniform):
    """Token ids (B,): the inverse-CDF draw of `uniform` (B, 1) over each row's nucleus.

    `cumulative` and `sorted_indices` are `_top`'s (B, L). The nucleus is the sorted
    prefix up to and including the first token whose cumulative mass exceeds `p` (all L
    tokens if none does). The token is the first in the nucleus whose cumulative mass
    exceeds `uniform` times the nucleus's mass.
    """
    length = ops.shape(cumulative)[-1]
    last = ops.minimum(_first_true(cumulative > p, length), length - 1)[:, None]
    target = uniform * ops.take_along_axis(cumulative, last, axis=-1)
    chosen = ops.minimum(_first_true(cumulative > target, length)[:, None], last)
    return ops.squeeze(ops.take_along_axis(sorted_indices, chosen, axis=-1), axis=-1)


class ExactTopPSampler(keras_hub.samplers.TopPSampler):
    """keras_hub's `TopPSampler` (same arguments and distribution) without the full sort
    while the nucleus fits in the top `candidates` tokens.

    Args:
      p: the nucleus's mass, in (0, 1].
      k: as keras_hub's: only the top `k` tokens may be drawn (None: any token).
      seed: the random seed.
      candidates: tokens sorted every step; more only for steps where a row's nucleus
        does not fit in them. Changes the speed, never the tokens.
    """

    def __init__(
        self,
        p: float = 0.1,
        k: Optional[int] = None,
        seed: Optional[int] = None,
        candidates: int = DEFAULT_CANDIDATES,
        **kwargs: Any,
    ):
        super().__init__(p=p, k=k, seed=seed, **kwargs)
        self.candidates = candidates

    def get_next_token(self, probabilities):
        """Token ids (B,) for `probabilities` (B, V): the full sort only in a step where
        some row's nucleus outgrows the candidates (`ops.cond`: a branch, not both)."""
        vocabulary = ops.shape(probabilities)[-1]
        limit = vocabulary if self.k is None else min(self.k, vocabulary)
        head = min(self.candidates, limit)
        # Drawn before the branch: both map the same number to a token.
        uniform = random.uniform((ops.shape(probabilities)[0], 1), seed=self.seed_generator)

        def draw_from_top(count: int):
            return _nucleus_draw(*_top(probabilities, count, head), self.p, uniform)

        if head == limit:
            return draw_from_top(limit)
        cumulative, indices = _top(probabilities, head, head)
        # A row's nucleus fits in its candidates once their mass exceeds p.
        fits = ops.any(cumulative > self.p, axis=-1)
        return ops.cond(
            ops.all(fits),
            lambda: _nucleus_draw(cumulative, indices, self.p, uniform),
            lambda: draw_from_top(limit),
        )

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "candidates": self.candidates}
