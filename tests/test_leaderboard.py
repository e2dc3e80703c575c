"""The decoder leaderboard's measures, on samples whose answers are known by hand."""

import keras
import numpy as np
import pytest

from components.minigpt.leaderboard import (
    distinct_n,
    eval_prompts,
    generated_tokens,
    mean_log_likelihood,
    repeated_ngram_rate,
    score,
    tokens_per_second,
)
from components.minigpt.model import GPTConfig, build_model

LOOPING = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8]  # what greedy decoding of a small model does
VARIED = list(range(10, 22))


def test_generated_tokens_skip_the_prompt_and_stop_at_the_end():
    ids = np.array([[2, 9, 4, 5, 0, 7], [2, 3, 3, 3, 3, 3]])
    assert generated_tokens(ids, [2, 1]) == [[4, 5], [3, 3, 3, 3, 3]]


def test_distinct_n_and_repetition_tell_a_loop_from_varied_text():
    assert distinct_n([VARIED], 1) == 1.0 and distinct_n([VARIED], 2) == 1.0
    assert distinct_n([LOOPING], 1) == 4 / 12
    assert distinct_n([LOOPING], 2) == 4 / 11  # (5,6) (6,7) (7,8) (8,5)
    assert repeated_ngram_rate([VARIED]) == 0.0
    assert repeated_ngram_rate([LOOPING]) == 5 / 9  # 9 four-grams, the first 4 are new
    # Pooled over samples: two identical samples are not diverse together.
    assert distinct_n([VARIED, VARIED], 1) == 0.5
    assert distinct_n([[], [3]], 2) == 0.0 and repeated_ngram_rate([[]]) == 0.0


def test_log_likelihood_is_the_model_s_own_probability_of_each_generated_token():
    cfg = GPTConfig(vocabulary_size=10, seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
    model = build_model(cfg)
    kernel, bias = model.get_layer("logits").get_weights()
    bias[:] = 0.0
    bias[4] = np.log(9.0)  # p(4) = 9 / (9 + 9 others) = 0.5 everywhere, whatever the input
    model.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    ids = np.array([[2, 4, 4, 7, 0]])
    assert mean_log_likelihood(model, ids, [[4, 4, 7]], [1]) == pytest.approx((2 * np.log(0.5) + np.log(1 / 18)) / 3)


def test_eval_prompts_are_bos_then_the_first_tokens_of_spread_out_lines():
    labels = np.arange(1, 41).reshape(10, 4)
    prompts = eval_prompts(labels, bos_id=2, count=3, prompt_tokens=2, length=6)
    np.testing.assert_array_equal(prompts, [[2, 1, 2, 0, 0, 0], [2, 17, 18, 0, 0, 0], [2, 37, 38, 0, 0, 0]])


def test_score_reports_every_measure():
    keras.utils.set_random_seed(0)
    model = build_model(GPTConfig(vocabulary_size=30, seq_len=16, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1))
    ids = np.array([[2] + LOOPING[:9] + [0] * 6, [2, 3] + VARIED[:8] + [0] * 6])
    assert tokens_per_second(ids, [1, 2], seconds=0.5) == 17 / 0.5
    measures = score(model, ids, [1, 2], tokens_per_s=34.0)
    assert measures["mean_length"] == (9 + 8) / 2
    assert measures["tokens_per_s"] == 34.0
    assert measures["mean_log_likelihood"] < 0
