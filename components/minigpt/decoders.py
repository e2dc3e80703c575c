"""The decoders the pipeline offers: one registry for the config, the samplers and the checks.

Each entry names its `keras_hub.samplers` class and the parameters a config may set.
This module imports nothing heavy, so the config loader can validate `eval.decoders`
in milliseconds; `components.minigpt.decoding` builds the samplers from it (top_p: our
exact subclass of `TopPSampler` that avoids sorting the vocabulary, `top_p.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Tuple

from components.runtime.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Decoder:
    # Class name in keras_hub.samplers.
    sampler: str
    # Parameters a config may set (the sampler's keyword arguments).
    params: Tuple[str, ...] = ()
    # Stochastic: takes the evaluation seed.
    seeded: bool = False
    # Parameters that count candidate tokens or beams: each must fit in the vocabulary.
    counts_tokens: Tuple[str, ...] = ()
    # Parameters that are probabilities or weights, in (0, 1].
    fractions: Tuple[str, ...] = ()


DECODERS = {
    "greedy": Decoder("GreedySampler"),
    "beam": Decoder("BeamSampler", ("num_beams",), counts_tokens=("num_beams",)),
    "random": Decoder("RandomSampler", seeded=True),
    "top_k": Decoder("TopKSampler", ("k",), seeded=True, counts_tokens=("k",)),
    "top_p": Decoder("TopPSampler", ("p", "k"), seeded=True, counts_tokens=("k",), fractions=("p",)),
    "contrastive": Decoder("ContrastiveSampler", ("k", "alpha"), counts_tokens=("k",), fractions=("alpha",)),
}


# The reference's decoders with its settings: `eval.decoders`' default, and what the
# decoding benchmark measures.
DEFAULT_SETTINGS = {
    "greedy": {},
    "beam": {"num_beams": 10},
    "random": {},
    "top_k": {"k": 10},
    "top_p": {"p": 0.5},
    "contrastive": {"k": 5, "alpha": 0.6},
}


def check_decoders(decoders: Mapping[str, Mapping[str, Any]], vocabulary_size: int, vocabulary: str) -> None:
    """Raises ConfigError, naming the `eval.decoders.*` key, for the first bad setting.

    Args:
      decoders: decoder name -> sampler parameters, as in `eval.decoders`.
      vocabulary_size: the most tokens a candidate count may ask for.
      vocabulary: what that size is, for the message (e.g. "vocab.vocabulary_size").
    """
    if not decoders:
        raise ConfigError("eval.decoders", "must name at least one decoder")
    for name, params in decoders.items():
        key = f"eval.decoders.{name}"
        if name not in DECODERS:
            raise ConfigError(key, f"unknown decoder (known: {', '.join(DECODERS)})")
        if not isinstance(params, Mapping):
            raise ConfigError(key, f"must map parameter names to values, got {params!r}")
        decoder = DECODERS[name]
        unknown = sorted(set(params) - set(decoder.params))
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", f"unknown parameter for {name} (known: {list(decoder.params)})")
        for pname, value in params.items():
            pkey = f"{key}.{pname}"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(pkey, f"must be a positive number, got {value!r}")
            if pname in decoder.fractions and value > 1:
                raise ConfigError(pkey, f"must be in (0, 1], got {value}")
            if pname in decoder.counts_tokens and not isinstance(value, int):
                raise ConfigError(pkey, f"must be a whole number, got {value!r}")
            if pname in decoder.counts_tokens:
                check_fits_vocabulary(pkey, value, vocabulary_size, vocabulary)


def check_fits_vocabulary(key: str, count: int, vocabulary_size: int, vocabulary: str) -> None:
    """Raises ConfigError naming `key` if a candidate count (a top-k `k`, a beam count)
    asks for more tokens than the vocabulary holds; `vocabulary` names that size."""
    if count > vocabulary_size:
        raise ConfigError(key, f"{count} exceeds {vocabulary} ({vocabulary_size} tokens); lower it to at most that")
