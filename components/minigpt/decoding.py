"""Text generation with every keras_hub sampler: the reference's method, and what both
generators share (samplers, prompts, the end of a text).

`UncachedGenerator` is the reference's method: its `next()` runs the model on the whole
window for every new token, keeping no cache. It stays as the baseline the cached,
compiled `cached_decoding.CachedGenerator` is measured and tested against.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import keras_hub
import numpy as np
from keras import ops, random

from components.minigpt.beam import CacheReorderingBeamSampler
from components.minigpt.contrastive import SharedCacheContrastiveSampler
from components.minigpt.decoders import DECODERS
from components.minigpt.model import PAD_ID, with_hidden_states
from components.minigpt.top_p import ExactTopPSampler, first_true

# A generated [PAD] ends a text: the model learned to predict it after a paragraph's last
# word (the reference's labels are padded and not masked in the loss).
END_TOKEN_IDS = (PAD_ID,)


class FirstMaxGreedySampler(keras_hub.samplers.GreedySampler):
    """keras_hub's `GreedySampler`: each row's most probable token, the first of equals,
    as `argmax` picks it. Found as the first position equal to the row's largest
    probability: XLA on CPU compiles `argmax` as a reduction over (value, index) pairs,
    3.7 ms for 160 rows of 5,000 tokens on JAX against 1.2 ms for the max and the first
    match (BENCHMARKS.md §5). Should a row have no position equal to its largest value
    (the max and the comparison seeing the probabilities rounded apart, were a compiler
    to compute them twice), the step takes `argmax` after all. Logits that are not
    finite (a diverged model) give no defined token here, nor in keras_hub, whose
    `argmax` picks differently on TensorFlow and JAX."""

    def get_next_token(self, probabilities):
        """Token ids (B,) for `probabilities` (B, V)."""
        vocabulary = ops.shape(probabilities)[-1]
        largest = ops.max(probabilities, axis=-1, keepdims=True)
        token = first_true(ops.equal(probabilities, largest), vocabulary)
        return ops.cond(
            ops.all(token < vocabulary),
            lambda: token,
            lambda: ops.cast(ops.argmax(probabilities, axis=-1), token.dtype),
        )


class InverseCdfRandomSampler(keras_hub.samplers.RandomSampler):
    """keras_hub's `RandomSampler` (same arguments, every token drawn in proportion to
    its probability) by the inverse CDF of one uniform number per row.

    keras_hub draws with `random.categorical`, which XLA compiles as Gumbel-max: a
    uniform number and two logarithms per token, 80,000 per batch-16 step of the
    reference, most of its time on TensorFlow (TensorFlow's own CPU kernel, without
    XLA, draws by inverse CDF too). Here the tokens' probabilities are summed in blocks
    of `BLOCK`, the block where the running mass first exceeds the uniform number times
    the total is found, then the token in it. The same seed gives other tokens than
    keras_hub's sampler, from the same distribution.
    """

    BLOCK = 64

    def get_next_token(self, probabilities):
        """Token ids (B,) for `probabilities` (B, V)."""
        vocabulary = ops.shape(probabilities)[-1]
        blocks = -(-vocabulary // self.BLOCK)
        padded = ops.pad(probabilities, [(0, 0), (0, blocks * self.BLOCK - vocabulary)])  # zeros: never drawn
        grouped = ops.reshape(padded, (-1, blocks, self.BLOCK))
        masses = ops.sum(grouped, axis=-1)  # (B, blocks)
        running = ops.cumsum(masses, axis=-1)
        target = random.uniform((ops.shape(probabilities)[0], 1), seed=self.seed_generator) * running[:, -1:]
        # A token (or block) of no mass is never the one drawn, whatever the rounding.
        block = ops.minimum(first_true(running > target, blocks), _last_true(masses > 0))[:, None]
        values = ops.take_along_axis(grouped, block[:, :, None], axis=1)[:, 0]  # (B, BLOCK)
        before = ops.take_along_axis(running - masses, block, axis=-1)
        crossed = first_true(((before + ops.cumsum(values, axis=-1)) > target) & (values > 0), self.BLOCK)
        return ops.squeeze(block, axis=-1) * self.BLOCK + ops.minimum(crossed, _last_true(values > 0))


def _last_true(mask):
    """Index of each row's last True in `mask` (B, L), -1 where a row has none."""
    length = ops.shape(mask)[-1]
    return length - 1 - first_true(ops.flip(mask, axis=-1), length)


# Our subclasses of keras_hub samplers: the same arguments and distribution (beam and
# contrastive: the same tokens), faster; beam and contrastive only in the cached decoder,
# which hands them its cache (elsewhere they run keras_hub's algorithm).
FASTER_SAMPLERS = {
    "GreedySampler": FirstMaxGreedySampler,
    "TopPSampler": ExactTopPSampler,
    "RandomSampler": InverseCdfRandomSampler,
    "BeamSampler": CacheReorderingBeamSampler,
    "ContrastiveSampler": SharedCacheContrastiveSampler,
}


def make_sampler(name: str, params: Mapping[str, Any], seed: int) -> keras_hub.samplers.Sampler:
    """A keras_hub sampler (or its faster subclass) by config name, e.g. ("top_k", {"k": 10})."""
    if name not in DECODERS:
        raise ValueError(f"Unknown decoder {name!r}; known: {', '.join(DECODERS)}.")
    decoder = DECODERS[name]
    kwargs = dict(params)
    if decoder.seeded:
        kwargs["seed"] = seed
    sampler_class = FASTER_SAMPLERS.get(decoder.sampler) or getattr(keras_hub.samplers, decoder.sampler)
    return sampler_class(**kwargs)


def bos_prompts(bos_id: int, batch_size: int, length: int) -> np.ndarray:
    """(batch_size, length) rows of [BOS] then [PAD]: the reference's prompt."""
    prompt = np.full((batch_size, length), PAD_ID, dtype="int32")
    prompt[:, 0] = bos_id
    return prompt


def pad_after_end(ids: np.ndarray, prompt_lengths: np.ndarray) -> np.ndarray:
    """Every token after a row's first generated end token becomes [PAD]."""
    ids = np.array(ids, copy=True)
    generated = np.arange(ids.shape[1])[None, :] >= np.asarray(prompt_lengths)[:, None]
    ended = np.cumsum(np.isin(ids, END_TOKEN_IDS) & generated, axis=1) > 0
    ids[ended] = PAD_ID
    return ids


class UncachedGenerator:
    """Generates `num_tokens` tokens after [BOS] with any sampler: the reference's method."""

    def __init__(self, model: keras.Model, bos_id: int, num_tokens: int):
        self._model = with_hidden_states(model)
        self._bos_id = bos_id
        self._length = num_tokens + 1  # the prompt row holds [BOS] + generated tokens

    def _next(self, prompt, cache, index):
        logits, hidden = self._model(prompt)  # (B, L, V), (B, L, D)
        # The token at `index` is predicted from position index - 1.
        return logits[:, index - 1, :], hidden[:, index - 1, :], cache

    def generate(self, sampler: keras_hub.samplers.Sampler, batch_size: int = 1) -> np.ndarray:
        """Token ids (B, 1 + num_tokens), starting with [BOS]; [PAD] after an end token."""
        return self.generate_from(sampler, bos_prompts(self._bos_id, batch_size, self._length))

    def generate_from(self, sampler: keras_hub.samplers.Sampler, token_ids: np.ndarray) -> np.ndarray:
        """Continues right-padded prompts (B, 1 + num_tokens) from the shortest one's end."""
        token_ids = np.asarray(token_ids, dtype="int32")
        lengths = prompt_lengths(token_ids)
        hidden = None
        if isinstance(sampler, keras_hub.samplers.ContrastiveSampler):
            hidden = self._model(token_ids)[1]
        out = sampler(
            next=self._next,
            prompt=token_ids,
            index=int(lengths.min()),
            mask=token_ids != PAD_ID,
            hidden_states=hidden,
        )
        return pad_after_end(keras.ops.convert_to_numpy(out), lengths)


def prompt_lengths(token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Tokens before the [PAD]s of each right-padded row."""
    return (np.asarray(token_ids) != PAD_ID).sum(axis=1)
