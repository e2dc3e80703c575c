"""Cached, compiled text generation for the mini-GPT, with every keras_hub sampler.

The reference's method (`decoding.UncachedGenerator`) reruns the model on the whole
window for every new token. Here each decoder layer keeps the keys and values of the
tokens already seen (keras_hub's `self_attention_cache`, as `GPT2CausalLM.call_with_cache`
does), so a step runs the model on one token per row. The layers are the trained model's own
(`model.get_layer`), so there is no second copy of the weights to keep in sync. A step
calls their sublayers and computes the attention itself (`_decoder_step`, `_attend`),
updating the cache in place in a layout XLA on CPU reads without copying, and with one
row computes the projections as multiply-and-sums (`_project`): same tokens, a step
two to several times as fast (BENCHMARKS.md §5).

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

from components.minigpt.beam import CacheReorderingBeamSampler
from components.minigpt.contrastive import SharedCacheContrastiveSampler
from components.minigpt.decoding import END_TOKEN_IDS, bos_prompts, pad_after_end, prompt_lengths
from components.minigpt.model import LOGITS_LAYER, PAD_ID

# A masked attention score: Keras' `ops.dot_product_attention` uses -0.7 x the dtype's largest.
MASKED_SCORE = -0.7 * float(np.finfo("float32").max)

# Positions per gather when beam search reorders the cache (`_reorder_cache`).
REORDER_CHUNK = 16


class CachedGenerator:
    """Generates `num_tokens` tokens after [BOS] or a prompt, with a key/value cache.

    Same results as `decoding.UncachedGenerator` (greedy: the same tokens), a step's cost
    independent of how much was generated before it.
    """

    def __init__(self, model: keras.Model, bos_id: int, num_tokens: int):
        self._embedding = model.get_layer("embedding")
        self._decoders = [layer for layer in model.layers if isinstance(layer, keras_hub.layers.TransformerDecoder)]
        for layer in self._decoders:
            _check_decoder(layer)
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

    def call_with_cache(self, token_ids, cache, cache_update_index, row_kernels=None):
        """(logits, hidden, cache) for `token_ids` (B, T) placed at `cache_update_index`;
        `row_kernels` (from `_row_kernels`) for a single-row step's projections.

        `cache` is `empty_cache`'s: which positions may be attended to (B, S), then each
        layer's keys and values (B, heads, S, head_dim), every leaf with the rows first,
        as keras_hub's beam and contrastive samplers gather and repeat them.
        """
        attendable, layers = cache
        # The model masks [PAD] keys (its embedding's mask_zero): a generated [PAD] (an end
        # token, after which beam search goes on scoring a candidate) is never attended to.
        attendable = ops.slice_update(attendable, [0, cache_update_index], ops.not_equal(token_ids, PAD_ID))
        tokens = self._embedding.token_embedding(token_ids)
        x = tokens + self._embedding.position_embedding(tokens, start_index=cache_update_index)
        # Causal: position index + t attends to the slots up to itself, [PAD]s excepted.
        positions = cache_update_index + ops.arange(ops.shape(x)[1])
        slots = ops.arange(ops.shape(attendable)[1])[None, :] <= positions[:, None]
        mask = ops.logical_and(slots[None, None], attendable[:, None, None, :])  # (B, 1, T, S)
        new_layers = []
        for layer, (keys, values) in zip(self._decoders, layers):

            def attend(query, new_keys, new_values, scale, keys=keys, values=values):
                keys = ops.slice_update(keys, [0, 0, cache_update_index, 0], new_keys)
                values = ops.slice_update(values, [0, 0, cache_update_index, 0], new_values)
                return _attend(query, keys, values, mask, scale), (keys, values)

            x, written = _decoder_step(layer, x, attend, row_kernels or {})
            new_layers.append(written)
        # The samplers get float32: a bf16 model's logits and hidden states would reach
        # XLA CPU dots it cannot compile in bf16 (contrastive search at batch 16 did).
        return ops.cast(self._logits(x), "float32"), ops.cast(x, "float32"), (attendable, tuple(new_layers))

    def _score_candidates(self, cache, index, tokens, row_kernels):
        """Contrastive search's candidates `tokens` (B, k) at position `index`, each on its
        row's cache (`contrastive.SharedCacheContrastiveSampler`): their logits (B, k, V),
        hidden states (B, k, D), and `keep(chosen)`, the cache with each row's chosen
        candidate (B,) written at `index`. The same arithmetic as running the k
        candidates as rows of k copies of the cache (`call_with_cache`), in another order
        of summation."""
        attendable, layers = cache
        batch_size, k = ops.shape(tokens)[0], ops.shape(tokens)[1]
        embedded = self._embedding.token_embedding(ops.reshape(tokens, (-1, 1)))
        x = embedded + self._embedding.position_embedding(embedded, start_index=index)
        # A candidate sees its row's attendable positions before `index`, and itself
        # unless it is [PAD] (masked as the model masks it).
        before = (ops.arange(ops.shape(attendable)[1])[None, :] < index) & attendable
        itself = ops.not_equal(tokens, PAD_ID)
        candidates_kv = []
        for layer, (keys, values) in zip(self._decoders, layers):

            def attend(query, new_keys, new_values, scale, keys=keys, values=values):
                attended = _attend_candidates(query, new_keys, new_values, keys, values, before, itself, scale)
                return attended, (new_keys, new_values)

            x, kv = _decoder_step(layer, x, attend, row_kernels)
            candidates_kv.append(kv)
        # Static last dimensions: the loop needs them when the batch size is not (serving).
        logits = ops.reshape(ops.cast(self._logits(x), "float32"), (batch_size, k, self._logits.units))
        hidden = ops.reshape(ops.cast(x, "float32"), (batch_size, k, self._embedding.embedding_dim))

        def keep(chosen):
            rows = ops.arange(batch_size, dtype="int32") * k + ops.cast(chosen, "int32")
            token = ops.take_along_axis(tokens, ops.cast(chosen, "int32")[:, None], axis=1)
            kept = ops.slice_update(attendable, [0, index], ops.not_equal(token, PAD_ID))
            written = tuple(
                tuple(ops.slice_update(t, [0, 0, index, 0], ops.take(new, rows, axis=0)) for t, new in zip(kv, new_kv))
                for kv, new_kv in zip(layers, candidates_kv)
            )
            return kept, written

        return logits, hidden, keep

    def _row_kernels(self) -> Dict[int, object]:
        """Every decoder projection's kernel as (outputs, inputs), by `id` of its layer,
        for `_project`. Empty (the layers' own dots) for a model computing in another
        dtype than float32 (layer by layer: mixed precision sets the layers' policies, not
        the model's) or quantized: only plain float32 kernels were measured and tested."""
        denses = []
        for layer in self._decoders:
            attention = layer._self_attention_layer
            denses += [attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense]
            denses += [layer._feedforward_intermediate_dense, layer._feedforward_output_dense]
        plain = all(
            d.compute_dtype == d.variable_dtype == "float32" and getattr(d, "quantization_mode", None) is None
            for d in denses
        )
        if not plain:
            return {}
        kernels = {}
        for dense in denses:
            inputs = int(np.prod(dense.kernel.shape[: _contracted(dense)]))
            kernels[id(dense)] = ops.transpose(ops.reshape(dense.kernel, (inputs, -1)))
        return kernels

    def empty_cache(self, batch_size, length):
        """A cache for `length` positions: nothing attendable yet, keys and values zero.

        Each layer's keys and values are tensors of their own, heads before positions:
        XLA on CPU copied a slice of one stacked tensor, and keys laid out as (B, S,
        heads, head_dim), at every layer and step. Greedy at batch 16, the code before
        and after in one session: TensorFlow 14,845 -> 20,199 tokens/s, JAX 8,366 ->
        11,572 (BENCHMARKS.md §5, 2026-12-01)."""
        decoder = self._decoders[0]
        shape = [batch_size, decoder.num_heads, length, self._head_dim]
        layers = tuple((ops.zeros(shape, "float32"), ops.zeros(shape, "float32")) for _ in self._decoders)
        return ops.zeros([batch_size, length], "bool"), layers

    @staticmethod
    def _reorder_cache(cache, rows, index):
        """`cache` with its rows in the order `rows`, right at the positions before
        `index`: each layer's keys and values are gathered in chunks of `REORDER_CHUNK`
        positions, each only once `index` reaches it (`ops.cond`: a branch, not both).

        For JAX only: against the whole-row `take` of `beam.take_rows` in the same
        process, beam-10 went 853-880 -> 1,044-1,086 tokens/s at batch 1 and 1,097-1,117
        -> 1,158-1,195 at batch 16, while XLA's conditionals on TensorFlow halved batch
        16 (1,243-1,251 -> 634-653), which keeps the whole take (BENCHMARKS.md §5)."""
        attendable, layers = cache

        def take_written(tensor):  # (rows, heads, positions, head_dim)
            rows_, heads, length, head_dim = ops.shape(tensor)
            for start in range(0, length, REORDER_CHUNK):
                shape = [rows_, heads, min(REORDER_CHUNK, length - start), head_dim]

                def gathered(tensor=tensor, start=start, shape=shape):
                    chunk = ops.take(ops.slice(tensor, [0, 0, start, 0], shape), rows, axis=0)
                    return ops.slice_update(tensor, [0, 0, start, 0], chunk)

                tensor = ops.cond(index > start, gathered, lambda tensor=tensor: tensor)
            return tensor

        return ops.take(attendable, rows, axis=0), keras.tree.map_structure(take_written, layers)

    def _build_cache(self, token_ids):
        """A cache seeded with one forward pass over the whole prompt."""
        cache = self.empty_cache(ops.shape(token_ids)[0], ops.shape(token_ids)[1])
        _, hidden, cache = self.call_with_cache(token_ids, cache, 0)
        return hidden, cache

    def _decode(self, sampler: keras_hub.samplers.Sampler, token_ids, index):
        """The compilable body: prefill, then the sampler's loop from position `index`."""
        self.traces += 1  # Python runs this once per trace, not per call
        hidden, cache = self._build_cache(token_ids)
        row_kernels = self._row_kernels()  # once per call, outside the loop

        def next(prompt, cache, index):
            # The cache index is that of the previous token, the one we feed.
            previous = index - 1
            token = ops.slice(prompt, [0, previous], [ops.shape(prompt)[0], 1])
            logits, hidden, cache = self.call_with_cache(token, cache, previous, row_kernels)
            return ops.squeeze(logits, axis=1), ops.squeeze(hidden, axis=1), cache

        # The sampler ends a row at an end token anywhere it may still write, so positions
        # to fill must not hold [PAD]; they hold a placeholder that no step attends to
        # (the causal mask stops at the position being generated).
        prompt_mask = ops.not_equal(token_ids, PAD_ID)
        # On JAX the sampler runs its loop in a StatelessScope of its own, which hides
        # ours: without `model` the layers there read the variables' stored values, which
        # jax.jit keeps as constants, the first trace's weights forever. With it the loop
        # carries the model's current values (ours, the jitted inputs) into its scope.
        # Beam search leaves the cache's reordering to us (only the positions written so
        # far), contrastive search the scoring of its candidates (on their row's cache).
        hooks = {}
        if isinstance(sampler, CacheReorderingBeamSampler) and keras.backend.backend() == "jax":
            hooks["reorder_cache"] = self._reorder_cache  # TensorFlow: the sampler's whole-row take
        if isinstance(sampler, SharedCacheContrastiveSampler):
            hooks["score_candidates"] = lambda *args: self._score_candidates(*args, row_kernels)
        return sampler(
            **hooks,
            next=next,
            prompt=ops.where(prompt_mask, token_ids, self._placeholder),
            cache=cache,
            index=index,
            mask=prompt_mask,
            # Beam search goes on to the end, as the reference's does: beams that ended
            # are still scored, and may be overtaken (stopping once every beam had a
            # [PAD] picked other beams than the reference). The others stop once every
            # row has ended: what follows an end is [PAD] in the output anyway.
            stop_token_ids=None if isinstance(sampler, keras_hub.samplers.BeamSampler) else END_TOKEN_IDS,
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
        inner = np.arange(self.max_length)[None, :] < lengths[:, None]
        if (token_ids[inner] == PAD_ID).any():
            raise ValueError("prompts must be right-padded: [PAD] (id 0) only after a prompt's tokens")
        out = self._compiled_decode(sampler)(token_ids, np.int32(index))
        return pad_after_end(keras.ops.convert_to_numpy(out), lengths)


# The sublayers `_decoder_step` calls: keras_hub's private names (0.25 and 0.32 alike).
_SUBLAYERS = (
    "_self_attention_layer",
    "_self_attention_layer_norm",
    "_feedforward_intermediate_dense",
    "_feedforward_output_dense",
    "_feedforward_layer_norm",
)
_ATTENTION_SUBLAYERS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense", "_inverse_sqrt_key_dim")


def _check_decoder(layer) -> None:
    """Refuses a decoder layer `_decoder_step` would compute wrongly: pre-norm, with
    cross-attention, or from a keras_hub whose layer lacks the sublayers it calls."""
    if layer.normalize_first:
        raise ValueError("_decoder_step computes post-norm decoders (the reference's), not pre-norm ones")
    if getattr(layer, "_cross_attention_layer", None) is not None:
        raise ValueError("_decoder_step computes self-attention decoders, not ones with cross-attention")
    attention = getattr(layer, "_self_attention_layer", None)
    missing = [name for name in _SUBLAYERS if not hasattr(layer, name)]
    missing += [f"_self_attention_layer.{name}" for name in _ATTENTION_SUBLAYERS if not hasattr(attention, name)]
    if missing:
        raise ValueError(
            f"keras_hub {keras_hub.__version__}'s TransformerDecoder lacks {', '.join(missing)}, which the cached "
            "decoder calls: use the keras_hub of requirements/constraints.txt"
        )


def _decoder_step(layer, x, attend, row_kernels):
    """`layer` (keras_hub's post-norm `TransformerDecoder`, its own sublayers) on `x`
    (B, T, D): (output, state). `attend(query, keys, values, scale)`, given the new
    tokens' projections (B, heads, T, head_dim) in float32, returns the attention's
    output (B, T, heads, head_dim) and what it keeps (`state`): the layer's cache with
    them written in place, or the candidates' own keys and values.

    keras_hub's layer, given its slice of the cache, stacks its keys and values into a
    new one that the caller stacks back: copies of the whole cache at every layer and
    step. Here one in-place update per tensor, the same arithmetic (measured with the
    earlier, stacked cache: beam-10 at batch 1 on TensorFlow 447 -> 600 tokens/s, same
    tokens, BENCHMARKS.md §5).
    """
    attention = layer._self_attention_layer

    def project(dense, inputs):
        return _project(dense, inputs, row_kernels.get(id(dense)))

    def heads_first(projected):  # (B, T, heads, head_dim) -> (B, heads, T, head_dim), float32
        return ops.cast(ops.transpose(projected, (0, 2, 1, 3)), "float32")

    attended, state = attend(
        heads_first(project(attention._query_dense, x)),
        heads_first(project(attention._key_dense, x)),
        heads_first(project(attention._value_dense, x)),
        attention._inverse_sqrt_key_dim,
    )
    x = layer._self_attention_layer_norm(x + project(attention._output_dense, ops.cast(attended, x.dtype)))
    hidden = project(layer._feedforward_intermediate_dense, x)
    return layer._feedforward_layer_norm(x + project(layer._feedforward_output_dense, hidden)), state


def _attend(query, keys, values, mask, scale):
    """Scaled dot-product attention of `query` (B, heads, T, head_dim) over `keys` and
    `values` (B, heads, S, head_dim) where `mask` (B, 1, T, S) allows: (B, T, heads,
    head_dim), as Keras' `ops.dot_product_attention` computes it (masked scores at -0.7 x
    float32's largest) for its own layout, (B, T, heads, head_dim) keys, which XLA on CPU
    transposed at every step. In float32 whatever the model's dtype: a bf16 model's
    cache is float32 too (XLA on CPU could not compile these dots in bf16, and the
    softmax is float32 in Keras' function as well)."""
    scores = ops.einsum("bhtk,bhsk->bhts", query, keys) * scale
    scores = ops.where(mask, scores, MASKED_SCORE)
    return ops.einsum("bhts,bhsk->bthk", ops.softmax(scores, axis=-1), values)


def _attend_candidates(query, new_keys, new_values, keys, values, before, itself, scale):
    """`_attend` for contrastive search's candidates, k per row, each at one position:
    `query`, `new_keys`, `new_values` (B * k, heads, 1, head_dim) over their row's cache
    `keys`, `values` (B, heads, S, head_dim) where `before` (B, S) allows, and over their
    own key and value where `itself` (B, k) allows: (B * k, 1, heads, head_dim)."""
    batch_size, k = ops.shape(itself)[0], ops.shape(itself)[1]
    heads, head_dim = ops.shape(keys)[1], ops.shape(keys)[3]

    def per_row(tensor):  # (B * k, heads, 1, head_dim) -> (B, k, heads, head_dim)
        return ops.reshape(tensor, (batch_size, k, heads, head_dim))

    query, new_keys, new_values = per_row(query), per_row(new_keys), per_row(new_values)
    on_cache = ops.where(before[:, None, None, :], ops.einsum("bchk,bhsk->bchs", query, keys) * scale, MASKED_SCORE)
    on_itself = ops.where(itself[:, :, None], ops.sum(query * new_keys, axis=-1) * scale, MASKED_SCORE)
    weights = ops.softmax(ops.concatenate([on_cache, on_itself[..., None]], axis=-1), axis=-1)
    attended = ops.einsum("bchs,bhsk->bchk", weights[..., :-1], values) + weights[..., -1:] * new_values
    return ops.reshape(attended, (batch_size * k, 1, heads, head_dim))


def _contracted(dense) -> int:
    """How many leading kernel dimensions a `Dense` or `EinsumDense` sums over."""
    if isinstance(dense, keras.layers.EinsumDense):
        inputs, kernel = dense.equation.split("->")[0].split(",")
        return sum(1 for axis in kernel if axis in inputs)
    return 1


def _project(dense, x, transposed=None):
    """`dense(x)` for `x` (B, T, ...), or, given `transposed` (its kernel as (outputs,
    inputs), `_row_kernels`) and a single row, the same as one multiply-and-sum.

    XLA compiles a one-row dot as a call into Eigen's matrix multiply, and the twelve
    small ones cost most of a batch-1 step; the sum it compiles inline (greedy, batch 1:
    1,506 -> 2,823 tokens/s on TensorFlow, 1,318 -> 2,766 on JAX, same tokens).
    """
    # Static shapes only: a function traced for any batch size (the serving signature's
    # None) takes the layer's own dot.
    if transposed is None or tuple(x.shape[:2]) != (1, 1):
        return dense(x)
    y = ops.sum(ops.reshape(x, (1, 1, -1)) * transposed, axis=-1)  # (1, outputs)
    y = ops.reshape(y, (1, 1, *dense.kernel.shape[_contracted(dense) :]))
    if dense.bias is not None:
        y = y + dense.bias
    return dense.activation(y)
