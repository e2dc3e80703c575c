"""How the decoders compare, in numbers: diversity, repetition, likelihood, length, speed.

The reference judges its decoders by eye ("greedy and beam repeat themselves, top-k and
top-p read better"); these measures say the same quantitatively, over several samples
per decoder, from [BOS] and from prompts taken from held-out lines:

  distinct_1 / distinct_2   unique unigrams / bigrams over all generated tokens (higher:
                            more varied text)
  repeated_4gram_rate       share of each sample's 4-grams that already occurred earlier
                            in the same sample (higher: more looping)
  mean_log_likelihood       mean log p(token | what precedes it) of the generated tokens
                            under the model itself (higher: more "expected" text)
  mean_length               generated tokens before the row ended ([PAD]) or the limit
  tokens_per_s              generated tokens per second, compiled decoder, steady state,
                            every decoder timed on the same batch of prompts
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import keras
import numpy as np

from components.minigpt.decoding import bos_prompts
from components.minigpt.model import PAD_ID

MEASURES = (
    "distinct_1",
    "distinct_2",
    "repeated_4gram_rate",
    "mean_log_likelihood",
    "mean_length",
    "tokens_per_s",
)


def eval_prompts(labels: np.ndarray, bos_id: int, count: int, prompt_tokens: int, length: int) -> np.ndarray:
    """`count` prompts of [BOS] + the first `prompt_tokens` ids of evenly spaced rows."""
    rows = labels[np.linspace(0, len(labels) - 1, num=count).astype(int), :prompt_tokens]
    prompts = bos_prompts(bos_id, count, length)
    prompts[:, 1 : 1 + rows.shape[1]] = rows
    # A row shorter than prompt_tokens ends in [PAD]s already: the prompt is what it has.
    return prompts


def generated_tokens(ids: np.ndarray, prompt_lengths: Sequence[int]) -> List[List[int]]:
    """Each row's tokens after its prompt, up to its end ([PAD])."""
    samples = []
    for row, start in zip(np.asarray(ids), prompt_lengths):
        tokens = row[start:]
        end = np.flatnonzero(tokens == PAD_ID)
        samples.append(tokens[: end[0] if len(end) else len(tokens)].tolist())
    return samples


def _ngrams(tokens: Sequence[int], n: int) -> List[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[Sequence[int]], n: int) -> float:
    """Unique n-grams / all n-grams, pooled over the samples (0 when there are none)."""
    grams = [gram for sample in samples for gram in _ngrams(sample, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(samples: Sequence[Sequence[int]], n: int = 4) -> float:
    """Share of n-grams that already occurred earlier in the same sample, pooled."""
    repeated = total = 0
    for sample in samples:
        seen = set()
        for gram in _ngrams(sample, n):
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


def mean_log_likelihood(model: keras.Model, ids: np.ndarray, samples: Sequence[Sequence[int]], starts) -> float:
    """Mean log-probability the model gives each generated token, given what precedes it."""
    logits = keras.ops.convert_to_numpy(keras.ops.cast(model(np.asarray(ids, dtype="int32")), "float32"))
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    values = [
        log_probs[row, position - 1, token]
        for row, (sample, start) in enumerate(zip(samples, starts))
        for position, token in enumerate(sample, start=start)
    ]
    return float(np.mean(values)) if values else 0.0


def tokens_per_second(ids: np.ndarray, prompt_lengths: Sequence[int], seconds: float) -> float:
    """Tokens a decoding call generated (every row of `ids`), per second it took."""
    return sum(len(sample) for sample in generated_tokens(ids, prompt_lengths)) / seconds


def score(model: keras.Model, ids: np.ndarray, prompt_lengths: Sequence[int], tokens_per_s: float) -> Dict[str, float]:
    """Every measure in MEASURES for one decoder's samples (`ids`: prompts + generations),
    its speed measured by the caller (`tokens_per_second`) over the call that made them."""
    samples = generated_tokens(ids, prompt_lengths)
    generated = sum(len(sample) for sample in samples)
    return {
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "repeated_4gram_rate": repeated_ngram_rate(samples, 4),
        "mean_log_likelihood": mean_log_likelihood(model, ids, samples, prompt_lengths),
        "mean_length": generated / len(samples),
        "tokens_per_s": tokens_per_s,
    }
