"""Contrastive search whose candidates share their row's cache: keras_hub's
`ContrastiveSampler`, same arguments and same tokens, without copying the cache k times.

Each step contrastive search runs the model on the top `k` candidate tokens of every row
and keeps the one whose hidden state is least like the text's so far. keras_hub's sampler
repeats each row's whole key/value cache for its k candidates, runs them as k rows, and
gathers the chosen candidate's cache back: for 16 prompts and k = 5, 27 MB copied and
read again every step on CPU. The candidates of a row differ only in their last token,
so with `score_candidates` (the cached generator's `CachedGenerator._score_candidates`)
each attends to its row's one cache plus its own new key and value, and only the chosen
candidate's keys and values are written. Against keras_hub's sampler on the same cached
decoder, in one process, same tokens: batch 16 2,868 -> 5,812 tokens/s on JAX, 2,332 ->
5,642 on TensorFlow (BENCHMARKS.md §5). Without the hook (the reference's uncached
method) this is keras_hub's sampler unchanged.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras_hub
from keras import ops

from components.minigpt.beam import still_generating


class SharedCacheContrastiveSampler(keras_hub.samplers.ContrastiveSampler):
    """keras_hub's `ContrastiveSampler` (`k`, `alpha`, temperature) whose caller may score
    a row's candidates against its cache without copying it, through `score_candidates`."""

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
        score_candidates: Optional[Callable] = None,
    ):
        """keras_hub's call, plus `score_candidates(cache, index, tokens)`: for candidate
        `tokens` (B, k) at position `index`, their next-token logits (B, k, V), hidden
        states (B, k, D) and a function `keep(chosen)` that returns the cache with the
        chosen candidate (B,) of each row written at `index`."""
        if score_candidates is None:
            return super().__call__(next, prompt, cache, index, mask, stop_token_ids, hidden_states, model)
        if hidden_states is None:
            raise ValueError("contrastive search needs the prompt's hidden_states")
        max_length = ops.shape(prompt)[1]
        index = ops.cast(index, "int32")
        mask = ops.zeros_like(prompt, dtype="bool") if mask is None else ops.cast(mask, "bool")
        logits, _, cache = next(prompt, cache, index)

        def cond(prompt, *_):
            return still_generating(prompt, mask, stop_token_ids)

        def body(prompt, cache, index, logits, hidden_states):
            probabilities, tokens = ops.top_k(self.compute_probabilities(logits), k=self.k, sorted=False)
            tokens = ops.cast(tokens, prompt.dtype)
            tokens = ops.where(mask[:, index, None], prompt[:, index, None], tokens)  # prompt tokens stay
            next_logits, next_hidden, keep = score_candidates(cache, index, tokens)
            # Each candidate's largest cosine similarity to the text's hidden states so far.
            similarity = ops.einsum("bcd,bsd->bcs", next_hidden, hidden_states)
            norms = ops.norm(next_hidden, axis=-1)[:, :, None] * ops.norm(hidden_states, axis=-1)[:, None, :]
            similarity = ops.where(ops.arange(max_length) < index, similarity / norms, -1.0)
            scores = (1 - self.alpha) * probabilities - self.alpha * ops.max(similarity, axis=-1)
            best = ops.argmax(scores, axis=-1)

            def chosen(values):  # (B, k, ...) -> (B, ...)
                picked = ops.take_along_axis(values, ops.reshape(best, (-1,) + (1,) * (len(values.shape) - 1)), 1)
                return ops.squeeze(picked, axis=1)

            prompt = ops.slice_update(prompt, [0, index], chosen(tokens[:, :, None]))
            hidden_states = ops.slice_update(hidden_states, [0, index, 0], chosen(next_hidden)[:, None, :])
            return prompt, keep(best), index + 1, chosen(next_logits), hidden_states

        prompt, *_ = self.run_loop(
            cond=cond,
            body=body,
            loop_vars=(prompt, cache, index, logits, hidden_states),
            maximum_iterations=max_length - index,
            model=model,
        )
        return prompt
