"""Beam search that lets the generator reorder its own cache: keras_hub's `BeamSampler`,
same arguments and same beams, without moving cache positions nothing has written yet.

After each step beam search reorders its beams (each new beam continues some parent),
and every beam's key/value cache must follow its parent. keras_hub's sampler gathers the
whole cache, every position, at every step: for 16 prompts x 10 beams of the reference
model that is 53 MB a step, copied by XLA on CPU at a few GB/s (BENCHMARKS.md §5). At
step i only the first i positions hold anything a later step reads; the others are
written before they are attended to. So this sampler leaves the reordering to
`reorder_cache(cache, rows, index)`, which the cached generator passes on JAX
(`CachedGenerator._reorder_cache`: only the positions before `index`), and otherwise
takes whole rows (`take_rows`; on TensorFlow several times faster than keras_hub's
`take_along_axis`: 8 vs 38 ms a gather of the batch-16 cache). Everything else is
keras_hub's algorithm: the same candidates, log-probabilities and `top_k`, so the same
beams (tested token for token).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras_hub
from keras import ops, tree


def still_generating(prompt, mask, stop_token_ids):
    """Whether some row of `prompt` has not yet generated one of `stop_token_ids` (a
    prompt's own tokens, where `mask` is True, don't count): keras_hub's loop condition."""
    if stop_token_ids is None:
        return ops.convert_to_tensor(True)
    ended = ops.zeros_like(mask)
    for token in stop_token_ids:
        ended = ended | ops.equal(prompt, token)
    return ops.logical_not(ops.all(ops.any(ended & ~mask, axis=-1)))


def take_rows(cache, rows, index):  # pylint: disable=unused-argument
    """Every leaf of `cache` reordered to `rows` (its rows first): keras_hub's gather."""
    return tree.map_structure(lambda leaf: ops.take(leaf, rows, axis=0), cache)


class CacheReorderingBeamSampler(keras_hub.samplers.BeamSampler):
    """keras_hub's `BeamSampler` (`num_beams`, `return_all_beams`, temperature) whose
    caller may reorder the cache itself, through `reorder_cache` in the call."""

    def __call__(
        self,
        next,  # pylint: disable=redefined-builtin  (keras_hub's name for it)
        prompt,
        cache=None,
        index=0,
        mask=None,
        stop_token_ids=None,
        hidden_states=None,
        model=None,
        reorder_cache: Optional[Callable] = None,
    ):
        """keras_hub's call, plus `reorder_cache(cache, rows, index) -> cache`: the cache
        with its rows in the order `rows` (B * num_beams,), of which only the positions
        before `index` must be right. Default: `take_rows`, the whole cache."""
        beams = self.num_beams
        batch_size, max_length = ops.shape(prompt)[0], ops.shape(prompt)[1]
        rows_total = batch_size * beams
        mask = ops.zeros_like(prompt, dtype="bool") if mask is None else ops.cast(mask, "bool")
        reorder_cache = reorder_cache or take_rows

        def repeat(x):  # each prompt's rows become its beams' rows
            return ops.repeat(x, beams, axis=0)

        prompt, mask = repeat(prompt), repeat(mask)
        cache = tree.map_structure(repeat, () if cache is None else cache)
        # At the first step only each prompt's first beam counts: the others are copies.
        log_probs = ops.tile(ops.convert_to_tensor([0.0] + [-1e9] * (beams - 1), "float32"), [batch_size])
        first_rows = ops.arange(batch_size, dtype="int32")[:, None] * beams

        def cond(prompt, *_):
            return still_generating(prompt, mask, stop_token_ids)

        def body(prompt, cache, index, log_probs):
            logits, _, cache = next(prompt, cache, index)
            vocabulary = ops.shape(logits)[-1]
            candidates = ops.log(self.compute_probabilities(logits)) + log_probs[:, None]
            best, chosen = ops.top_k(ops.reshape(candidates, [batch_size, -1]), k=beams, sorted=False)
            rows = ops.reshape(chosen // vocabulary + first_rows, [rows_total])
            prompt = ops.take(prompt, rows, axis=0)
            cache = reorder_cache(cache, rows, index)
            token = ops.cast(ops.reshape(chosen % vocabulary, [rows_total]), prompt.dtype)
            token = ops.where(mask[:, index], prompt[:, index], token)  # prompt tokens stay
            prompt = ops.slice_update(prompt, [0, index], token[:, None])
            return prompt, cache, index + 1, ops.reshape(best, [rows_total])

        index = ops.cast(index, "int32")
        prompt, _, _, log_probs = self.run_loop(
            cond=cond,
            body=body,
            loop_vars=(prompt, cache, index, log_probs),
            maximum_iterations=max_length - index,
            model=model,
        )
        prompts = ops.reshape(prompt, [batch_size, beams, max_length])
        log_probs = ops.reshape(log_probs, [batch_size, beams])
        if self.return_all_beams:
            order = ops.argsort(-log_probs, axis=-1)
            sorted_log_probs = ops.take_along_axis(log_probs, order, axis=1)
            return ops.take_along_axis(prompts, order[:, :, None], axis=1), sorted_log_probs
        top = ops.argmax(log_probs, axis=-1)
        return ops.take_along_axis(prompts, top[:, None, None], axis=1)[:, 0]
