"""The model's sizes, defined once: the pipeline's `model:` config section and the code
that builds the model both use these classes. Imports nothing, so the config loader stays
fast and the model code stays importable without TFX."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The sizes a config sets; the defaults are the keras.io example's."""

    # Longest sequence the position embedding knows; also the training window.
    seq_len: int = 128
    embed_dim: int = 256
    # Hidden size of each decoder's feed-forward block.
    ff_dim: int = 256
    num_heads: int = 3
    num_layers: int = 2


@dataclasses.dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """The sizes plus the vocabulary's: everything `build_model` needs."""

    # Learned vocabulary size (a small corpus may yield fewer than the 5000 asked for).
    vocabulary_size: int = 5000

    @classmethod
    def for_vocabulary(cls, sizes: Mapping[str, Any], vocabulary: Sequence[str]) -> "GPTConfig":
        """The model that `sizes` (a `ModelConfig` as a dict) describes over `vocabulary`."""
        return cls(vocabulary_size=len(vocabulary), **sizes)
