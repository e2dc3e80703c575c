"""Cached, compiled text generation for the mini-GPT, with every keras_hub sampler.

The reference's method (`decoding.UncachedGenerator`) reruns the model on the whole
window for every new token. Here each decoder layer keeps the keys and values of the
tokens already seen (keras_hub's `self_attention_cache`, as `GPT2CausalLM.call_with_cache`
does), so a step runs the model on one token per row. The layers are the trained model's own
(`model.get_layer`), so there is no second copy of the weights to keep in sync.

The whole decode (prefill, then the sampler's loop) is one function compiled once per
sampler and input shape and reused: `tf.function(jit_compile=True)` on TensorFlow,
`jax.jit` with the variables passed in on JAX, so a call decodes with the weights of the
moment (the Trainer samples after every epoch with one sampler). `traces` counts how
often it was traced.
"""

from __future__ import annotations

from typing import Dict

import keras
import keras_hub
import numpy as np
from keras import ops

from components.minigpt.decoding import END_TOKEN_IDS, bos_prompts, pad_after_end, prompt_lengths
from components.minigpt.model import LOGITS_LAYER, PAD_ID


class CachedGenerator:
    """Generates `num_tokens` tokens after [BOS] or a prompt, with a key/value cache.

    Same results as `decoding.UncachedGenerator` (greedy: the same tokens), a step's cost
    independent of how much was generated before it.
    """

    def __init__(self, model: keras.Model, bos_id: int, num_tokens: int):
        self._embedding = model.get_layer("embedding")
        self._decoders = [layer for layer in model.layers if isinstance(layer, keras_hub.layers.TransformerDecoder)]
        self._logits = model.get_layer(LOGITS_LAYER)
        # keras_hub's attention uses key_dim = embed_dim // num_heads (85 for 256 / 3).
        self._head_dim = self._embedding.embedding_dim // self._decoders[0].num_heads
        self._model = model
        self._bos_id = bos_id
        self.max_length = num_tokens + 1
        # Positions still to fill hold this id, never attended to (see _decode).
        self._placeholder = next(i for i in range(len(END_TOKEN_IDS) + 1) if i not in END_TOKEN_IDS)
        self._compiled: Dict[int, object] = {}
        self.traces = 0

    # --- the model, one position at a time -------------------------------------------

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """(logits, hidden, cache) for `token_ids` (B, T) placed at `cache_update_index`.

        `cache` is (B, layers, 2, max_length, heads, head_dim): every layer's keys and
        values in one tensor (measured faster than a tuple of per-layer tensors for beam
        search, which reorders the whole cache at every step; no slower for the others).
        """
        tokens = self._embedding.token_embedding(token_ids)
        x = tokens + self._embedding.position_embedding(tokens, start_index=cache_update_index)
        caches = []
        for i, layer in enumerate(self._decoders):
            x, layer_cache = layer(
                x, self_attention_cache=cache[:, i], self_attention_cache_update_index=cache_update_index
            )
            caches.append(layer_cache)
        # The samplers get float32: a bf16 model's logits and hidden states would reach
        # XLA CPU dots it cannot compile in bf16 (contrastive search at batch 16 did).
        return ops.cast(self._logits(x), "float32"), ops.cast(x, "float32"), ops.stack(caches, axis=1)

    def _build_cache(self, token_ids):
        """An empty cache seeded with one forward pass over the whole prompt."""
        batch_size, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        shape = [batch_size, len(self._decoders), 2, length, self._decoders[0].num_heads, self._head_dim]
        cache = ops.zeros(shape, dtype=self._model.compute_dtype)
        _, hidden, cache = self.call_with_cache(token_ids, cache, 0)
        return hidden, cache

    def _decode(self, sampler: keras_hub.samplers.Sampler, token_ids, index):
        """The compilable body: prefill, then the sampler's loop from position `index`."""
        self.traces += 1  # Python runs this once per trace, not per call
        hidden, cache = self._build_cache(token_ids)

        def next(prompt, cache, index):
            # The cache index is that of the previous token, the one we feed.
            previous = index - 1
            token = ops.slice(prompt, [0, previous], [ops.shape(prompt)[0], 1])
            logits, hidden, cache = self.call_with_cache(token, cache, previous)
            return ops.squeeze(logits, axis=1), ops.squeeze(hidden, axis=1), cache

        # The sampler ends a row at an end token anywhere it may still write, so positions
        # to fill must not hold [PAD]; they hold a placeholder that no step attends to
        # (the causal mask stops at the position being generated).
        prompt_mask = ops.not_equal(token_ids, PAD_ID)
        # On JAX the sampler runs its loop in a StatelessScope of its own, which hides
        # ours: without `model` the layers there read the variables' stored values, which
        # jax.jit keeps as constants, the first trace's weights forever. With it the loop
        # carries the model's current values (ours, the jitted inputs) into its scope.
        return sampler(
            next=next,
            prompt=ops.where(prompt_mask, token_ids, self._placeholder),
            cache=cache,
            index=index,
            mask=prompt_mask,
            stop_token_ids=END_TOKEN_IDS,
            hidden_states=hidden,
            model=self._model,
        )

    # --- compiled once per sampler, reused ------------------------------------------

    def _compiled_decode(self, sampler):
        key = id(sampler)
        if key not in self._compiled:
            backend = keras.backend.backend()
            if backend == "tensorflow":
                import tensorflow as tf  # pylint: disable=import-outside-toplevel

                self._compiled[key] = tf.function(lambda ids, i: self._decode(sampler, ids, i), jit_compile=True)
            elif backend == "jax":
                self._compiled[key] = self._jax_decode(sampler)
            else:
                self._compiled[key] = lambda ids, i: self._decode(sampler, ids, i)
        return self._compiled[key]

    def _jax_decode(self, sampler):
        """jax.jit over the decode with the model's and sampler's variables as inputs."""
        import jax  # pylint: disable=import-outside-toplevel

        variables = list(self._model.variables)

        def decode(values, sampler_values, token_ids, index):
            mapping = list(zip(variables, values)) + list(zip(sampler.variables, sampler_values))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                out = self._decode(sampler, token_ids, index)
            return out, [scope.get_current_value(v) for v in sampler.variables]

        compiled = jax.jit(decode)

        def run(token_ids, index):
            out, sampler_values = compiled(
                [v.value for v in variables], [v.value for v in sampler.variables], token_ids, index
            )
            for variable, value in zip(sampler.variables, sampler_values):
                variable.assign(value)  # the next call draws new random numbers
            return out

        return run

    # --- public API ------------------------------------------------------------------

    def generate(self, sampler: keras_hub.samplers.Sampler, batch_size: int = 1) -> np.ndarray:
        """Token ids (B, 1 + num_tokens) after [BOS], as `UncachedGenerator.generate`."""
        return self.generate_from(sampler, bos_prompts(self._bos_id, batch_size, self.max_length))

    def generate_from(self, sampler: keras_hub.samplers.Sampler, token_ids: np.ndarray) -> np.ndarray:
        """Continues prompts: (B, max_length) int32 ids, each row [BOS] + its tokens, then
        [PAD]s. Generation starts after the shortest prompt (longer ones keep their
        tokens where they have them); a row ends at `max_length` or an end token, after
        which it holds [PAD]. Reuse the same sampler object to reuse its compilation.
        """
        token_ids = np.asarray(token_ids, dtype="int32")
        if token_ids.ndim != 2 or token_ids.shape[1] != self.max_length:
            raise ValueError(f"prompts must be (batch, {self.max_length}) ids, got shape {token_ids.shape}")
        lengths = prompt_lengths(token_ids)
        index = int(lengths.min())
        if not 1 <= index < self.max_length:
            raise ValueError(f"every prompt must hold 1 to {self.max_length - 1} tokens, got {index}")
        out = self._compiled_decode(sampler)(token_ids, np.int32(index))
        return pad_after_end(keras.ops.convert_to_numpy(out), lengths)
