"""The reference mini-GPT: TokenAndPositionEmbedding -> N x TransformerDecoder -> Dense.

With a 5000-token vocabulary and the reference sizes it has 3,387,266 parameters, the
figure in the keras.io example.
"""

from __future__ import annotations

from typing import Optional

import keras
import keras_hub

# GPTConfig and PAD_ID are defined beside the config and the loss that use them; code
# that builds or decodes a model imports them from here.
from components.minigpt.config import GPTConfig
from components.minigpt.losses import PAD_ID, Perplexity, TokenCrossEntropy

LOGITS_LAYER = "logits"


@keras.saving.register_keras_serializable(package="minigpt")
class TokenLogits(keras.layers.Dense):
    """The reference's `Dense(vocabulary_size)` over every position, computed as one 2-D
    matmul over all B x T positions: same weights, same result, faster on CPU.

    Keras' `Dense` multiplies a (B, T, D) input by the (D, V) kernel as a broadcast batch
    matmul, and TensorFlow differentiates that per sequence: B partial (D, V) kernel
    gradients, then their sum, which on the 5000-token logits is most of a CPU step's
    matmul time (BENCHMARKS.md §1). Flattened, the kernel gradient is one (D, B*T) x
    (B*T, V) matmul. The bias is added after the reshape back, which also keeps
    TensorFlow from fusing matmul + bias into oneDNN's slower non-AMX inner product.
    A `.keras` file holding this layer loads where this module is imported (it
    registers the class), e.g. `mlflow.keras.load_model` after `import components.minigpt.model`.
    """

    def call(self, inputs, training=None):
        shape = keras.ops.shape(inputs)
        flat = keras.ops.matmul(keras.ops.reshape(inputs, (-1, shape[-1])), self.kernel)
        x = keras.ops.reshape(flat, (*shape[:-1], self.units))
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def build_model(cfg: GPTConfig, dtype: Optional[str] = None, reference_logits: bool = False) -> keras.Model:
    """The reference functional model: int token ids (B, T) -> logits (B, T, V).

    Args:
      cfg: the model's sizes.
      dtype: a Keras dtype policy for every layer, e.g. "mixed_bfloat16" (bf16 compute,
        float32 weights); None is Keras' global policy (float32 unless set).
      reference_logits: the keras.io example's plain `Dense` logits layer (the
        benchmarks' baseline) instead of `TokenLogits`; same weights and outputs.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        vocabulary_size=cfg.vocabulary_size,
        sequence_length=cfg.seq_len,
        embedding_dim=cfg.embed_dim,
        mask_zero=True,
        dtype=dtype,
        name="embedding",
    )(token_ids)  # (B, T, D)
    for i in range(cfg.num_layers):
        # One argument only: causal self-attention, no cross-attention.
        x = keras_hub.layers.TransformerDecoder(
            num_heads=cfg.num_heads, intermediate_dim=cfg.ff_dim, dtype=dtype, name=f"decoder_{i}"
        )(x)  # (B, T, D)
    logits_layer = keras.layers.Dense if reference_logits else TokenLogits
    logits = logits_layer(cfg.vocabulary_size, dtype=dtype, name=LOGITS_LAYER)(x)  # (B, T, V)
    return keras.Model(token_ids, logits, name="minigpt")


def compile_model(
    model: keras.Model,
    learning_rate: "float | keras.optimizers.schedules.LearningRateSchedule",
    jit_compile: Optional[bool] = None,
    steps_per_execution: int = 1,
    reference_loss: bool = False,
) -> None:
    """Adam + cross-entropy from logits, with perplexity that ignores [PAD] (the reference).

    `jit_compile` (None: Keras' "auto", no XLA on a CPU-only TensorFlow) and
    `steps_per_execution` change how fast a step runs, not what it computes. So does
    `reference_loss`: the keras.io example's own Keras loss and keras_hub metric (the
    benchmarks' baseline; its loss gets the [PAD] mask only by Keras carrying it through
    the layers) instead of the same ones computed by `components.minigpt.losses`.

    A model computing in float16 gets Adam inside a `LossScaleOptimizer`, whose dynamic
    scale keeps small gradients from flushing to zero in float16. Keras' `compile` adds it
    only when the model's own dtype policy is mixed_float16, and `build_model` sets the
    layers' policies, not the model's.
    """
    if reference_loss:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(from_logits=True), keras_hub.metrics.Perplexity
    else:
        loss, metric = TokenCrossEntropy(), Perplexity
    optimizer = keras.optimizers.Adam(learning_rate)
    if any(layer.compute_dtype == "float16" for layer in model.layers):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Ours is weighted: Keras hands `metrics` no sample weights, and the perplexity must
    # leave out the rows a padded batch adds (`sequences.padded_batch`); the same name and
    # value where there are no weights. keras_hub's takes no row weights: it stays unweighted.
    perplexity = {"metrics" if reference_loss else "weighted_metrics": [metric(from_logits=True, mask_token_id=PAD_ID)]}
    model.compile(
        optimizer=optimizer,
        loss=loss,
        **perplexity,
        jit_compile="auto" if jit_compile is None else jit_compile,
        steps_per_execution=steps_per_execution,
    )


def forward_flops(cfg: GPTConfig, batch_size: int) -> int:
    """Floating-point operations of one forward pass over (batch_size, seq_len) tokens.

    Matmuls only (2 per multiply-add): Q/K/V/output projections, attention scores and
    values over the full window, the feed-forward block and the logits. A training
    step costs about three times this (forward, and twice that backward).
    """
    heads_dim = (cfg.embed_dim // cfg.num_heads) * cfg.num_heads  # keras_hub: key_dim = D // H
    per_layer = (
        4 * 2 * cfg.embed_dim * heads_dim  # q, k, v and output projections
        + 2 * 2 * cfg.seq_len * heads_dim  # scores and weighted values
        + 2 * 2 * cfg.embed_dim * cfg.ff_dim  # feed-forward in and out
    )
    per_token = cfg.num_layers * per_layer + 2 * cfg.embed_dim * cfg.vocabulary_size
    return batch_size * cfg.seq_len * per_token


def with_hidden_states(model: keras.Model) -> keras.Model:
    """The same network returning (logits, last hidden states); contrastive search needs both."""
    logits_layer = model.get_layer(LOGITS_LAYER)
    return keras.Model(model.input, [logits_layer.output, logits_layer.input])
