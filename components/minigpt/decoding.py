"""Text generation with every keras_hub sampler, from a [BOS] prompt.

`next()` follows the sampler contract `next(prompt, cache, index) -> (logits, hidden,
cache)` in its simplest form, as in the reference: it runs the whole window each step
and keeps no cache. (A cached, compiled decode loop is a later piece of work; the
contract stays the same.)
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import keras_hub
import numpy as np

from components.minigpt.decoders import DECODERS
from components.minigpt.model import PAD_ID, with_hidden_states


def make_sampler(name: str, params: Mapping[str, Any], seed: int) -> keras_hub.samplers.Sampler:
    """A keras_hub sampler by config name, e.g. ("top_k", {"k": 10})."""
    if name not in DECODERS:
        raise ValueError(f"Unknown decoder {name!r}; known: {', '.join(DECODERS)}.")
    decoder = DECODERS[name]
    kwargs = dict(params)
    if decoder.seeded:
        kwargs["seed"] = seed
    return getattr(keras_hub.samplers, decoder.sampler)(**kwargs)


class Generator:
    """Generates `num_tokens` tokens after [BOS] with any sampler, on one model."""

    def __init__(self, model: keras.Model, bos_id: int, num_tokens: int):
        self._model = with_hidden_states(model)
        self._bos_id = bos_id
        self._length = num_tokens + 1  # the prompt row holds [BOS] + generated tokens

    def _next(self, prompt, cache, index):
        logits, hidden = self._model(prompt)  # (B, L, V), (B, L, D)
        # The token at `index` is predicted from position index - 1.
        return logits[:, index - 1, :], hidden[:, index - 1, :], cache

    def prompt(self, batch_size: int = 1) -> np.ndarray:
        prompt = np.full((batch_size, self._length), PAD_ID, dtype="int32")
        prompt[:, 0] = self._bos_id
        return prompt

    def generate(self, sampler: keras_hub.samplers.Sampler, batch_size: int = 1) -> np.ndarray:
        """Token ids (B, 1 + num_tokens), starting with [BOS]."""
        prompt = self.prompt(batch_size)
        hidden = None
        if isinstance(sampler, keras_hub.samplers.ContrastiveSampler):
            hidden = self._model(prompt)[1]
        out = sampler(next=self._next, prompt=prompt, index=1, hidden_states=hidden)
        return keras.ops.convert_to_numpy(out)
