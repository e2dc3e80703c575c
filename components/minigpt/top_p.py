"""Exact top-p (nucleus) sampling that sorts a few dozen candidates, not the vocabulary.

keras_hub's `TopPSampler` sorts all probabilities every step (5,000 for the reference
model), the slowest sampler in the cached decode. The nucleus is only the smallest set of
top tokens whose mass exceeds p, a few dozen tokens for a trained model at p = 0.5
(at most 60 of 4,558 measured on the pipeline's trained model). So each step takes the
top `candidates` tokens; only when some row's candidates hold no more than p of the mass
does the step fall back, for every row, in an `ops.cond` branch that the compiled decode
(XLA on TensorFlow, `jax.jit` on JAX) runs only then. A step where some row's most
probable token holds less than p / `candidates` (a near-flat row; less a margin for
rounding) goes straight to the fallback without taking the candidates: that row's could
not hold more than p, so the step would fall back anyway. The fallback sorts nothing
(`_crossing`: a bisection over the probabilities' values, then a count of the ties at
the crossing), unless `k` is set, where it
sorts the top k: XLA's CPU sort of 16 x 5,000 probabilities took 8-13 ms a step, more
than the rest of the step (random weights, whose nuclei hold about 1,900 tokens).

Every branch draws the token the same way from the same random number: one uniform
per row, mapped through the nucleus's cumulative mass in sorted order (inverse CDF).
A row whose nucleus fits in the candidates gets the same token from the sorting
branches, since the candidates are the full sort's first entries (`top_k` puts the
lower index first among equal probabilities) and their cumulative sums are the same
prefix. The sort-free fallback finds the same tokens (tested against the full sort,
ties included) from masses summed in another order: a draw within a rounding error of
the boundary between two tokens' cumulative masses may give the neighbouring token
(none did in the tests' draws). Likewise where p itself lies within a rounding error of
a running mass, which takes exact ties: for ten tokens of 0.1 and p = 0.7 the fallback's
7 x 0.1 rounds to 0.69999999, not above p, where keras_hub's running sum gives
0.70000005, so its nucleus keeps an eighth token that keras_hub's does not, and that
row's draws change (found in review; a sort-free sum cannot round as a sorted one does).

The distribution is keras_hub's: the same nucleus (sorted tokens up to and including
the first whose cumulative mass exceeds p; all of them if none does), renormalized.
keras_hub draws with `random.categorical` over all sorted tokens, whose random numbers
depend on how many tokens it draws over; the inverse-CDF draw does not, which is what
makes the branches agree. The same seed thus gives other tokens than keras_hub's
sampler, from the same distribution.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras_hub
from keras import ops, random

# Measured on the pipeline's trained model at p = 0.5: the nucleus held at most 60
# tokens, 32 candidates sent 65 % of batch-16 steps to the fallback, 64 none.
DEFAULT_CANDIDATES = 64


def first_true(mask, fill: int):
    """Index of each row's first True in `mask` (B, L), `fill` where a row has none.

    A min over positions, not `argmax`, whose choice among ties is not guaranteed."""
    positions = ops.arange(ops.shape(mask)[-1], dtype="int32")
    return ops.min(ops.where(mask, positions, fill), axis=-1)


def _blocked_cumsum(values, block: int):
    """Running sums along the last axis of `values` (B, L), in blocks of `block` values,
    each block's continuing from the blocks before it: the first `block` sums are those
    of the first `block` values alone, to the bit. Linear in L: XLA on CPU sums a row's
    every prefix on its own (quadratic: 25 M additions for a 5,000-token row, most of
    a TensorFlow top-p step before this)."""
    length = ops.shape(values)[-1]
    blocks = -(-length // block)
    padded = ops.pad(values, [(0, 0), (0, blocks * block - length)])
    within = ops.cumsum(ops.reshape(padded, (-1, blocks, block)), axis=-1)  # (B, blocks, block)
    totals = within[:, :, -1]
    before = ops.cumsum(totals, axis=-1) - totals  # the blocks before each; 0 for the first
    return ops.reshape(within + before[:, :, None], (-1, blocks * block))[:, :length]


def _top(probabilities, count: int, head: int):
    """The `count` most probable tokens of each row: their cumulative mass in descending
    order of probability, and their ids, both (B, count).

    Summed in blocks of `head` (<= count): the first `head` sums are those of the
    candidates alone, to the bit (XLA's cumsum rounds a long row's prefix differently
    from the same values summed alone, measured on TensorFlow), as the candidates' sums
    must equal the full sort's.
    """
    values, indices = ops.top_k(probabilities, k=count, sorted=True)
    return _blocked_cumsum(values, head), indices


def _nucleus_draw(cumulative, sorted_indices, p: float, uniform):
    """Token ids (B,): the inverse-CDF draw of `uniform` (B, 1) over each row's nucleus.

    `cumulative` and `sorted_indices` are `_top`'s (B, L). The nucleus is the sorted
    prefix up to and including the first token whose cumulative mass exceeds `p` (all L
    tokens if none does). The token is the first in the nucleus whose cumulative mass
    exceeds `uniform` times the nucleus's mass.
    """
    length = ops.shape(cumulative)[-1]
    last = ops.minimum(first_true(cumulative > p, length), length - 1)[:, None]
    target = uniform * ops.take_along_axis(cumulative, last, axis=-1)
    chosen = ops.minimum(first_true(cumulative > target, length)[:, None], last)
    return ops.squeeze(ops.take_along_axis(sorted_indices, chosen, axis=-1), axis=-1)


def _nth_true(mask, n):
    """Position of each row's `n`-th True in `mask` (B, L), `n` (B, 1) from 1 to the
    row's count of Trues.

    A bisection over positions (masked counts), not a running count: XLA on CPU took
    longer for one (B, L) cumsum than for a whole bisection of `_crossing`. It stops once
    every row's `start` has exactly n - 1 Trues before it, so a step where every n is 1
    (no tie at the crossing, the usual case) counts nothing.
    """
    length = ops.shape(mask)[-1]
    positions = ops.arange(length, dtype="int32")

    def unresolved(start, stop, before):
        return ops.any(before < n - 1)

    def halve(start, stop, before):
        # before: the Trues ahead of start, fewer than n; the n-th lies ahead of stop.
        middle = (start + stop) // 2
        count = ops.sum(ops.cast(mask & (positions < middle), "int32"), axis=-1, keepdims=True)
        early = count < n
        return ops.where(early, middle, start), ops.where(early, stop, middle), ops.where(early, count, before)

    zeros = ops.zeros_like(n)
    start, _, _ = ops.while_loop(unresolved, halve, (zeros, zeros + length, zeros))
    return first_true(mask & (positions >= start), length)


def _crossing(probabilities, bits, target, total, bounds):
    """Per row, the token (B,) at which the running mass in descending order of
    probability (lower id first among equal ones) first exceeds `target` (B, 1), and
    that running mass (B, 1), without sorting; token -1 where the row's `total` (B, 1)
    does not exceed `target`.

    A bisection over `bits` (the probabilities' float32 bit patterns, in the same order
    as the values since none is negative) finds that token's probability v: the largest
    with more than `target` in the tokens of at least v. It halves `bounds` (B, 1), the
    row's smallest bit pattern and one past its largest (25 halvings for a near-flat
    5,000-token row, not 31 from 0), until one pattern is left. Each halving compares
    the probabilities with the middle pattern read as a float32 (the same order), so it
    reads one (B, L) array, not two (a tenth of the sampler's step on XLA CPU), and
    carries the mass of the tokens above the bracket, at the end those above v.

    The tokens above v come first; the c-th token of probability v (in id order) brings
    the running mass to their mass plus c times v: c, the first whose running mass
    exceeds the target (the last tie if rounding leaves none), comes from counting the
    c whose running mass does not, not from a running sum. The mass is summed over the
    row, not in sorted order: it may differ from a sorted running sum in the last bit.
    """

    def unresolved(low, high, above):
        return ops.any(high - low > 1)

    def halve(low, high, above):
        # The mass of the tokens of at least low exceeds target; above, that of at least
        # high, does not.
        middle = low + (high - low) // 2
        at_least = probabilities >= ops.view(middle, "float32")
        mass = ops.sum(ops.where(at_least, probabilities, 0.0), axis=-1, keepdims=True)
        exceeds = mass > target
        return ops.where(exceeds, middle, low), ops.where(exceeds, high, middle), ops.where(exceeds, above, mass)

    low, high = bounds
    low, _, above = ops.while_loop(unresolved, halve, (low, high, ops.zeros_like(target)))
    value = ops.view(low, "float32")  # (B, 1)
    ties = bits == low
    counts = ops.arange(1, ops.shape(bits)[-1] + 1, dtype="float32")
    short = ops.sum(ops.cast(above + counts * value <= target, "int32"), axis=-1, keepdims=True)
    c = ops.minimum(short + 1, ops.sum(ops.cast(ties, "int32"), axis=-1, keepdims=True))
    token = ops.where(ops.squeeze(total > target, axis=-1), _nth_true(ties, c), -1)
    return token, above + ops.cast(c, "float32") * value


def _nucleus_draw_unsorted(probabilities, p: float, uniform):
    """`_nucleus_draw` over every token of each row, by `_crossing` instead of a sort:
    the nucleus ends at the crossing of p (all tokens if their mass does not exceed p),
    the token drawn is the crossing of `uniform` (B, 1) times the nucleus's mass."""
    bits = ops.view(probabilities, "int32")
    total = ops.sum(probabilities, axis=-1, keepdims=True)
    bounds = ops.min(bits, axis=-1, keepdims=True), ops.max(bits, axis=-1, keepdims=True) + 1
    everything = total <= p
    last, mass = _crossing(probabilities, bits, ops.where(everything, 0.0, p), total, bounds)
    # Summed in another order than the total, the crossing's mass may exceed it by a last
    # bit; a target at or above the total would find no token (-1).
    mass = ops.minimum(ops.where(everything, total, mass), total)
    token, through = _crossing(probabilities, bits, uniform * mass, total, bounds)
    # Never past the nucleus, whatever the rounding.
    past = ops.squeeze((through > mass) & ~everything, axis=-1)
    return ops.where(past | (token < 0), last, token)


class ExactTopPSampler(keras_hub.samplers.TopPSampler):
    """keras_hub's `TopPSampler` (same arguments and distribution) without the full sort
    while the nucleus fits in the top `candidates` tokens.

    Args:
      p: the nucleus's mass, in (0, 1].
      k: as keras_hub's: only the top `k` tokens may be drawn (None: any token).
      seed: the random seed.
      candidates: tokens sorted in a step unless a row has no token of at least
        p / candidates; the fallback only for steps where a row's nucleus does not fit
        in them. Changes the speed, not the tokens (but for rounding, see the module's
        docstring).
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
        """Token ids (B,) for `probabilities` (B, V): the fallback only in a step where
        some row's nucleus outgrows the candidates (`ops.cond`: a branch, not both)."""
        vocabulary = ops.shape(probabilities)[-1]
        limit = vocabulary if self.k is None else min(self.k, vocabulary)
        head = min(self.candidates, limit)
        # Drawn before the branch: both map the same number to a token.
        uniform = random.uniform((ops.shape(probabilities)[0], 1), seed=self.seed_generator)

        def fallback():
            if self.k is None:
                return _nucleus_draw_unsorted(probabilities, self.p, uniform)
            return _nucleus_draw(*_top(probabilities, limit, head), self.p, uniform)

        if head == limit:
            return fallback()

        def candidates_draw():
            cumulative, indices = _top(probabilities, head, head)
            # A row's nucleus fits in its candidates once their mass exceeds p.
            fits = ops.any(cumulative > self.p, axis=-1)
            return ops.cond(
                ops.all(fits),
                lambda: _nucleus_draw(cumulative, indices, self.p, uniform),
                fallback,
            )

        # A row none of whose tokens holds p / head has candidates of less than p, their
        # sum's rounding included (2**-10 covers it up to 2**13 candidates): the step
        # falls back, without their top_k (a third of the sampler's near-flat step).
        # `any` of a comparison, not a max: a float max over 16 x 5,000 cost 80 us (JAX, CPU).
        hopeless = ~ops.any(probabilities >= self.p * (1 - 2**-10) / head, axis=-1)
        return ops.cond(ops.any(hopeless), fallback, candidates_draw)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "candidates": self.candidates}
