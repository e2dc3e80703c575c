"""The cached, compiled decoder: the reference's tokens and logits, compiled once, prompts."""

import keras
import keras_hub
import numpy as np
import pytest

from components.minigpt.beam import CacheReorderingBeamSampler
from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.decoding import (
    FirstMaxGreedySampler,
    InverseCdfRandomSampler,
    UncachedGenerator,
    bos_prompts,
    make_sampler,
)
from components.minigpt.model import PAD_ID, GPTConfig, build_model
from tests.conftest import run_on_jax
from tests.test_top_p import decode_table

CFG = GPTConfig(vocabulary_size=300, seq_len=32, embed_dim=32, ff_dim=32, num_heads=3, num_layers=2)
BOS = 2


def _random_model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model(CFG)


def _trained_model():
    """A model fitted to a few repeating phrases: confident, with real structure."""
    model = _random_model(1)
    phrases = np.random.default_rng(0).integers(3, CFG.vocabulary_size, size=(8, 6))
    labels = np.concatenate([np.tile(phrases[i], 6)[: CFG.seq_len][None] for i in range(8)]).astype("int32")
    features = np.concatenate([np.full((8, 1), BOS, "int32"), labels[:, :-1]], axis=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(features, labels, batch_size=8, epochs=60, verbose=0)
    return model


@pytest.mark.parametrize("model_kind", ["random", "trained"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_cached_greedy_gives_exactly_the_reference_tokens(model_kind, batch_size):
    model = _random_model() if model_kind == "random" else _trained_model()
    greedy = make_sampler("greedy", {}, 0)
    reference = UncachedGenerator(model, BOS, 24).generate(greedy, batch_size)
    cached = CachedGenerator(model, BOS, 24).generate(greedy, batch_size)
    np.testing.assert_array_equal(cached, reference)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_every_step_s_logits_agree_with_the_whole_window(batch_size):
    """Batch 1 steps run the single-row projections (`_project` with `_row_kernels`). A
    [PAD] in the window (a generated end token, which beam search goes on scoring after)
    is masked as the model masks it (mask_zero): no later position attends to it."""
    model = _random_model()
    ids = np.random.default_rng(1).integers(3, CFG.vocabulary_size, size=(batch_size, 20)).astype("int32")
    ids[:, 7] = PAD_ID
    full = keras.ops.convert_to_numpy(model(ids))
    generator = CachedGenerator(model, BOS, 19)
    row_kernels = generator._row_kernels()
    assert len(row_kernels) == 6 * CFG.num_layers
    cache = generator.empty_cache(batch_size, 20)  # as long as the window
    for position in range(20):
        logits, _, cache = generator.call_with_cache(ids[:, position : position + 1], cache, position, row_kernels)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(logits)[:, 0], full[:, position], rtol=1e-4, atol=1e-5)


def test_the_decode_is_traced_once_per_sampler_and_shape_and_reused():
    generator = CachedGenerator(_random_model(), BOS, 16)
    top_k = make_sampler("top_k", {"k": 5}, seed=1)
    first = [generator.generate(top_k) for _ in range(4)]
    assert generator.traces == 1
    assert len({tuple(ids[0]) for ids in first}) > 1  # the random state advances between calls
    generator.generate(top_k, batch_size=4)  # a new shape: one more trace
    generator.generate(top_k, batch_size=4)
    assert generator.traces == 2
    beam = make_sampler("beam", {"num_beams": 4}, seed=1)
    for _ in range(3):
        generator.generate(beam)
    assert generator.traces == 3


def _reference_greedy_continuation(model, prompts, length):
    """The reference's loop, spelled out: run the whole window, take the argmax."""
    ids = np.array(prompts, dtype="int32")
    start = (ids != PAD_ID).sum(axis=1)
    for position in range(start.min(), length):
        logits = keras.ops.convert_to_numpy(model(ids))[:, position - 1]
        choice = logits.argmax(axis=-1)
        ids[:, position] = np.where(position < start, ids[:, position], choice)
    return ids


def _often_ending_model():
    """Random weights whose [PAD] logit is pushed up: texts end after a few tokens, and
    beam search goes on scoring the beams that ended (a generated [PAD] in the cache)."""
    model = _random_model(3)
    model.name = "often_ending"
    kernel, bias = model.get_layer("logits").get_weights()
    bias[PAD_ID] = 2.0
    model.get_layer("logits").set_weights([kernel, bias])
    ids = CachedGenerator(model, BOS, 24).generate_from(make_sampler("greedy", {}, 0), _prompts_of_three_lengths(25))
    assert (ids[:, 6:] == PAD_ID).any(), "no text ended: pick another bias"
    return model


def _prompts_of_three_lengths(length):
    prompts = bos_prompts(BOS, 3, length)
    prompts[1, 1:3] = [17, 40]
    prompts[2, 1:6] = [5, 6, 7, 8, 9]
    return prompts


def check_beam_and_contrastive_give_the_reference_s_tokens() -> None:
    """Beam search (ours, which reorders only the cache positions written so far) and
    contrastive search, cached and compiled, against keras_hub's own samplers on the
    reference's uncached method: the same tokens, prompts of three lengths, a random and
    a trained model; with `return_all_beams`, every beam and its log-probability.
    Module-level so that the JAX test can run it in a child process."""
    for model in (_random_model(), _trained_model(), _often_ending_model()):
        prompts = _prompts_of_three_lengths(25)
        cached, uncached = CachedGenerator(model, BOS, 24), UncachedGenerator(model, BOS, 24)
        for name, params, theirs in [
            ("beam", {"num_beams": 3}, keras_hub.samplers.BeamSampler(num_beams=3)),
            ("contrastive", {"k": 3, "alpha": 0.6}, keras_hub.samplers.ContrastiveSampler(k=3, alpha=0.6)),
        ]:
            ours = cached.generate_from(make_sampler(name, params, 0), prompts)
            if keras.backend.backend() == "jax" and model.name == "often_ending":
                continue  # the uncached JAX method mis-scores texts with [PAD]s: rescored below
            np.testing.assert_array_equal(ours, uncached.generate_from(theirs, prompts), err_msg=name)
        all_beams = {}
        for sampler in (CacheReorderingBeamSampler(4, return_all_beams=True), keras_hub.samplers.BeamSampler(4, True)):
            decode = cached._compiled_decode(sampler)
            all_beams[type(sampler)] = [keras.ops.convert_to_numpy(x) for x in decode(prompts, np.int32(1))]
        (ours_ids, ours_scores), (their_ids, their_scores) = all_beams.values()
        np.testing.assert_array_equal(ours_ids, their_ids)
        np.testing.assert_allclose(ours_scores, their_scores, rtol=1e-6)
        # A [BOS]-only prompt's beams score their texts' log-probability under the
        # whole-window model (a longer prompt's forced tokens score the best candidate's).
        np.testing.assert_allclose(ours_scores[0], _log_probability(model, ours_ids[0]), rtol=1e-5)


def _log_probability(model, texts):
    """Log-probability (N,) of each text's tokens after its first, each given the tokens
    before it, by the model on the whole window."""
    logits = keras.ops.convert_to_numpy(model(texts)).astype("float64")[:, :-1]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return np.take_along_axis(log_probs, texts[:, 1:, None], axis=-1).sum(axis=(1, 2))


@pytest.mark.parametrize("length", [15, 16, 17, 33])
def test_reordering_the_cache_moves_every_position_written_so_far(length):
    """`_reorder_cache` (beam search on JAX) gathers chunks of positions only once they
    hold something: before `index` the cache must equal a whole gather, at every index,
    chunk edges included."""
    generator = CachedGenerator(_random_model(), BOS, length - 1)
    rng = np.random.default_rng(0)
    attendable = rng.random((6, length)) > 0.3
    layers = tuple(tuple(rng.random((6, 3, length, 10)).astype("float32") for _ in range(2)) for _ in range(2))
    rows = np.array([2, 2, 0, 5, 1, 3], "int32")
    for index in range(1, length + 1):
        moved = keras.tree.map_structure(
            keras.ops.convert_to_numpy, generator._reorder_cache((attendable, layers), rows, index)
        )
        np.testing.assert_array_equal(moved[0], attendable[rows])
        for got, want in zip(keras.tree.flatten(moved[1]), keras.tree.flatten(layers)):
            np.testing.assert_array_equal(got[:, :, :index], want[rows][:, :, :index], err_msg=f"index {index}")


def test_beam_and_contrastive_give_the_reference_s_tokens_on_tensorflow():
    check_beam_and_contrastive_give_the_reference_s_tokens()


def test_beam_and_contrastive_give_the_reference_s_tokens_on_jax():
    check = "from tests.test_cached_decoding import check_beam_and_contrastive_give_the_reference_s_tokens as c; c()"
    run_on_jax(check)


def test_prompts_of_different_lengths_are_continued_as_the_reference_would():
    model = _random_model()
    generator = CachedGenerator(model, BOS, 15)
    prompts = bos_prompts(BOS, 2, 16)
    prompts[0, 1:4] = [17, 40, 41]  # [BOS] + 3 tokens
    prompts[1, 1:7] = [5, 6, 7, 8, 9, 10]  # [BOS] + 6 tokens: kept where it has them
    out = generator.generate_from(make_sampler("greedy", {}, 0), prompts)
    np.testing.assert_array_equal(out[:, :7][1], prompts[1, :7])
    np.testing.assert_array_equal(out, _reference_greedy_continuation(model, prompts, 16))


def test_a_generated_pad_ends_the_row_and_the_rest_is_padding():
    model = _random_model()
    kernel, bias = model.get_layer("logits").get_weights()
    bias[:] = -20.0
    bias[PAD_ID] = 20.0  # the model always says [PAD]: every row ends at once
    model.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    for generator in (CachedGenerator(model, BOS, 10), UncachedGenerator(model, BOS, 10)):
        np.testing.assert_array_equal(generator.generate(make_sampler("greedy", {}, 0), 2), bos_prompts(BOS, 2, 11))


def _with(prompt, position, token):
    prompt = prompt.copy()
    prompt[0, position] = token
    return prompt


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 11), "int32"),
        bos_prompts(BOS, 1, 12),
        np.full((1, 11), 5, "int32"),
        _with(_with(bos_prompts(BOS, 1, 11), 1, 5), 3, 7),  # [BOS] 5 [PAD] 7: a [PAD] inside
        _with(bos_prompts(BOS, 1, 11), 0, PAD_ID) + np.eye(1, 11, 1, dtype="int32") * 5,  # [PAD] first
    ],
)
def test_prompts_that_leave_nothing_to_generate_or_do_not_fit_are_refused(bad):
    with pytest.raises(ValueError, match="prompts must be|every prompt must hold"):
        CachedGenerator(_random_model(), BOS, 10).generate_from(make_sampler("greedy", {}, 0), bad)


def test_pre_norm_decoders_are_refused():
    """The cached step computes the reference's post-norm layers; a pre-norm model
    would decode wrong tokens silently."""
    model = _random_model()
    model.get_layer("decoder_0").normalize_first = True
    with pytest.raises(ValueError, match="post-norm"):
        CachedGenerator(model, BOS, 10)


def test_a_bf16_model_decodes_contrastive_search_at_batch_16():
    """XLA on CPU cannot compile some bf16 dots (contrastive search's similarities failed at
    batch 16 with 80 tokens, the Evaluator's leaderboard): the samplers get float32
    logits and states (without that cast this test fails with that XLA error)."""
    model = build_model(GPTConfig(vocabulary_size=4558), dtype="mixed_bfloat16")
    ids = CachedGenerator(model, BOS, 80).generate(make_sampler("contrastive", {"k": 5, "alpha": 0.6}, 0), 16)
    assert ids.shape == (16, 81)


def _sampler_at(name: str, params: dict, state: list) -> keras_hub.samplers.Sampler:
    """A new sampler whose random state is `state` (another sampler's, copied)."""
    sampler = make_sampler(name, params, seed=1)
    for variable, value in zip(sampler.variables, state):
        variable.assign(value)
    return sampler


def check_new_weights_take_effect_without_a_retrace() -> None:
    """The Trainer's per-epoch sample reuses one generator and one sampler while the weights
    change under them: each call must decode with the weights of the moment, compiled once.
    Module-level so that the JAX test can run it in a child process."""
    cfg = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=2)
    keras.utils.set_random_seed(1)
    new_weights = build_model(cfg).get_weights()
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    generator, greedy = CachedGenerator(model, BOS, 12), make_sampler("greedy", {}, 0)
    one_row = CachedGenerator(model, BOS, 12)  # batch 1: the single-row projections
    top_k_generator, top_k = CachedGenerator(model, BOS, 12), make_sampler("top_k", {"k": 5}, seed=1)
    old_greedy = generator.generate(greedy, batch_size=2)
    old_one_row = one_row.generate(greedy, batch_size=1)
    top_k_generator.generate(top_k, batch_size=2)
    state = [keras.ops.convert_to_numpy(v.value) for v in top_k.variables]
    stale_top_k = CachedGenerator(model, BOS, 12).generate(_sampler_at("top_k", {"k": 5}, state), batch_size=2)

    model.set_weights(new_weights)
    new_greedy = generator.generate(greedy, batch_size=2)
    np.testing.assert_array_equal(new_greedy, UncachedGenerator(model, BOS, 12).generate(greedy, batch_size=2))
    assert not np.array_equal(new_greedy, old_greedy), "the two weights give the same tokens: pick other seeds"
    assert generator.traces == 1
    new_one_row = one_row.generate(greedy, batch_size=1)
    np.testing.assert_array_equal(new_one_row, UncachedGenerator(model, BOS, 12).generate(greedy, batch_size=1))
    assert not np.array_equal(new_one_row, old_one_row) and one_row.traces == 1
    new_top_k = top_k_generator.generate(top_k, batch_size=2)
    fresh = CachedGenerator(model, BOS, 12).generate(_sampler_at("top_k", {"k": 5}, state), batch_size=2)
    np.testing.assert_array_equal(new_top_k, fresh)
    assert not np.array_equal(new_top_k, stale_top_k), "the two weights give the same tokens: pick other seeds"
    assert top_k_generator.traces == 1


def test_new_weights_take_effect_without_a_retrace_on_tensorflow():
    assert keras.backend.backend() == "tensorflow"
    check_new_weights_take_effect_without_a_retrace()


def test_new_weights_take_effect_without_a_retrace_on_jax():
    """On JAX the weights are the compiled decode's inputs; weights that the compile saw
    only as constants would keep the first trace's values (Keras picks its backend once
    per process, so this runs in a child process)."""
    check = "from tests.test_cached_decoding import check_new_weights_take_effect_without_a_retrace as c; c()"
    run_on_jax(check)


def check_random_draws_follow_the_probabilities() -> None:
    """The inverse-CDF draw, compiled, over 200 tokens (blocks of 64, the last one
    padded): each token as often as its probability says, tokens of no mass never.
    Module-level so that the JAX test can run it in a child process."""
    probabilities = np.zeros(200, "float32")
    probabilities[[0, 63, 64, 130, 199]] = [0.1, 0.2, 0.3, 0.15, 0.25]  # both sides of block edges
    logits = np.log(np.maximum(probabilities, 1e-30))[None, None]
    sampler = make_sampler("random", {}, seed=3)
    assert isinstance(sampler, InverseCdfRandomSampler)
    tokens = decode_table(sampler, np.tile(logits, (1, 8000, 1)))
    frequencies = np.bincount(tokens.ravel(), minlength=200) / tokens.size
    np.testing.assert_allclose(frequencies, probabilities, atol=0.015)
    assert set(np.unique(tokens)) == {0, 63, 64, 130, 199}
    again = decode_table(make_sampler("random", {}, seed=3), np.tile(logits, (1, 8000, 1)))
    np.testing.assert_array_equal(tokens, again)  # the seed fixes the tokens


def test_random_draws_follow_the_probabilities_on_tensorflow():
    check_random_draws_follow_the_probabilities()


def test_random_draws_follow_the_probabilities_on_jax():
    check = "from tests.test_cached_decoding import check_random_draws_follow_the_probabilities as c; c()"
    run_on_jax(check)


def check_greedy_picks_keras_hubs_tokens() -> None:
    """Ours (the first position equal to the row's largest probability) against keras_hub's
    `argmax`, compiled in the samplers' loop: random rows, rows whose largest value is
    tied at several positions (the first wins), a row of equal values, and a row whose
    two largest logits differ by less than the softmax resolves (their probabilities are
    equal: the first wins, not the larger logit). Module-level so that the JAX test can
    run it in a child process."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 6, 300)).astype("float32")
    for step in range(12):
        tied = rng.choice(300, size=1 + step % 4, replace=False)
        logits[step, 1, tied] = 9.0  # the largest, at 1 to 4 positions
    logits[:, 2] = 0.5  # every token equal: the first one
    logits[:, 3] = -30.0
    logits[:, 3, 10], logits[:, 3, 20] = 0.0, 1e-9  # exp(-1e-9) rounds to 1: equal probabilities
    greedy = make_sampler("greedy", {}, 0)
    assert isinstance(greedy, FirstMaxGreedySampler)
    ours, theirs = decode_table(greedy, logits), decode_table(keras_hub.samplers.GreedySampler(), logits)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours[1], [min(np.flatnonzero(row == 9.0)) for row in logits[:, 1]])
    assert (ours[2] == 0).all() and (ours[3] == 10).all()


def test_greedy_picks_keras_hubs_tokens_on_tensorflow():
    check_greedy_picks_keras_hubs_tokens()


def test_greedy_picks_keras_hubs_tokens_on_jax():
    run_on_jax("from tests.test_cached_decoding import check_greedy_picks_keras_hubs_tokens as c; c()")


def test_a_bf16_model_decodes_at_batch_1():
    """Mixed precision sets the layers' dtype policies, not the model's: the batch-1
    multiply-and-sum projections, float32 only, must not be handed its bf16 layers (the
    Trainer's per-epoch sample, at batch 1, failed on a bf16 model)."""
    model = build_model(GPTConfig(vocabulary_size=500), dtype="mixed_bfloat16")
    ids = CachedGenerator(model, BOS, 12).generate(make_sampler("top_k", {"k": 10}, 0), 1)
    assert ids.shape == (1, 13)


@pytest.mark.parametrize("name, params", [("greedy", {}), ("beam", {"num_beams": 3}), ("contrastive", {"k": 3})])
def test_a_decode_traced_for_any_batch_size_gives_the_same_tokens(name, params):
    """The serving signature traces the decode for any number of prompts (batch None):
    the batch-1 projections must be chosen from static shapes only (a symbolic one stopped
    the Trainer's export), and the samplers' loops need static shapes but the batch's."""
    import tensorflow as tf

    generator = CachedGenerator(_random_model(), BOS, 8)
    sampler = make_sampler(name, params, 0)
    decode = tf.function(
        lambda ids: generator._decode(sampler, ids, 1), input_signature=[tf.TensorSpec([None, 9], tf.int32)]
    )
    prompts = np.full((1, 9), PAD_ID, "int32")
    prompts[:, 0] = BOS
    np.testing.assert_array_equal(decode(prompts).numpy(), generator.generate(sampler, 1))
