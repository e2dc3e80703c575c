"""The exact top-p sampler: the full sort's tokens from a few candidates, keras_hub's nucleus.

`ExactTopPSampler` with `candidates` >= the vocabulary runs its fallback every step (the
sort-free `_crossing`; with `k`, a sort of the top k): the sampler most tests compare
with, same seed, same tokens. `test_the_fallback_draws_the_full_sort_s_tokens` compares
that fallback with the full sort.
"""

import keras
import numpy as np
import pytest

from components.minigpt import top_p
from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.decoding import make_sampler
from components.minigpt.model import GPTConfig, build_model
from components.minigpt.top_p import DEFAULT_CANDIDATES, ExactTopPSampler
from tests.conftest import run_on_jax

VOCABULARY = 200
CANDIDATES = 8
STEPS = 40
BOS = 2


def _logits(kind: str, batch_size: int, seed: int) -> np.ndarray:
    """(STEPS, batch_size, VOCABULARY) next-token logits of one kind.

    peaked: a few tokens hold most of the mass; flat: every token ties; tied: logits on a
    coarse grid, so that equal probabilities meet inside and at the edge of the candidates;
    mixed: peaked and flat rows alternate.
    """
    rng = np.random.default_rng(seed)
    shape = (STEPS, batch_size, VOCABULARY)
    if kind == "peaked":
        return (rng.normal(size=shape) * 4).astype("float32")
    if kind == "flat":
        return np.zeros(shape, "float32")
    if kind == "tied":
        return np.round(rng.normal(size=shape) * 2).astype("float32")
    mixed = _logits("peaked", batch_size, seed)
    mixed[:, 1::2] = 0.0
    return mixed


def decode_table(sampler: ExactTopPSampler, logits: np.ndarray) -> np.ndarray:
    """(B, STEPS) tokens the sampler draws, step i from `logits[i]` (STEPS, B, V), in the
    samplers' own loop: compiled with XLA on TensorFlow, a `lax.while_loop` on JAX."""
    table = keras.ops.convert_to_tensor(logits)
    steps, batch_size = logits.shape[:2]

    def next(prompt, cache, index):
        return keras.ops.take(table, index - 1, axis=0), None, cache

    def decode(prompt):
        return sampler(next=next, prompt=prompt, index=1)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        decode = tf.function(decode, jit_compile=True)
    out = decode(np.zeros((batch_size, steps + 1), "int32"))
    return keras.ops.convert_to_numpy(out)[:, 1:]


def compiled(fn):
    """`fn` compiled as the decode compiles it: XLA on TensorFlow, `jax.jit` on JAX."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


def _sorted_cumulative(logits: np.ndarray) -> np.ndarray:
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    return np.cumsum(-np.sort(-probabilities, axis=-1), axis=-1)


def _needs_more_than(count: int, logits: np.ndarray, p: float) -> np.ndarray:
    """Per step and row: the nucleus holds more than the `count` most probable tokens."""
    return _sorted_cumulative(logits)[..., count - 1] <= p


def _ranks(tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Each drawn token's rank (B, STEPS) in its row's descending order, lower id first."""
    order = np.argsort(-logits, axis=-1, kind="stable")  # (STEPS, B, V)
    ranks = np.argsort(order, axis=-1, kind="stable")
    steps, rows = np.meshgrid(np.arange(logits.shape[0]), np.arange(logits.shape[1]))
    return ranks[steps, rows, tokens]


CASES = [
    # (kind, batch size, p, k): which rows need more than the candidates varies.
    ("peaked", 1, 0.5, None),
    ("flat", 1, 0.5, None),
    ("tied", 1, 0.9, None),
    ("mixed", 16, 0.5, None),
    ("peaked", 16, 0.99, None),
    ("tied", 16, 0.9, None),
    ("mixed", 16, 0.9, 20),
    ("mixed", 16, 1.0, None),  # every nucleus is the whole row
    ("flat", 4, 1.0, 30),
]


def check_same_tokens_as_the_full_sort(kind: str, batch_size: int, p: float, k) -> None:
    """Module-level so that the JAX test can run it in a child process."""
    logits = _logits(kind, batch_size, seed=batch_size)
    fast = decode_table(ExactTopPSampler(p=p, k=k, seed=5, candidates=CANDIDATES), logits)
    full = decode_table(ExactTopPSampler(p=p, k=k, seed=5, candidates=VOCABULARY), logits)
    np.testing.assert_array_equal(fast, full)
    ranks = _ranks(fast, logits)
    needs_fallback = _needs_more_than(CANDIDATES, logits, p).T
    limit = k or VOCABULARY
    if kind != "peaked" or p > 0.9:
        # Tokens past the candidates were drawn: removing the fallback breaks this case.
        assert needs_fallback.any() and (ranks >= CANDIDATES).any()
    assert (ranks[~needs_fallback] < CANDIDATES).all() and (ranks < limit).all()
    # Every token lies in keras_hub's nucleus: up to the first whose mass exceeds p.
    cumulative = _sorted_cumulative(logits).transpose(1, 0, 2)
    before = np.take_along_axis(cumulative, np.maximum(ranks - 1, 0)[..., None], axis=-1)[..., 0]
    assert ((ranks == 0) | (before <= p + 1e-5)).all()  # float sums: a hair of slack


@pytest.mark.parametrize("kind,batch_size,p,k", CASES)
def test_same_seed_same_tokens_as_the_full_sort_on_tensorflow(kind, batch_size, p, k):
    assert keras.backend.backend() == "tensorflow"
    check_same_tokens_as_the_full_sort(kind, batch_size, p, k)


def check_candidates_are_the_full_sort_s_first_entries_to_the_bit() -> None:
    """What exactness rests on, compiled, at the reference's 5,000 tokens and the default
    candidates: the same ids (lower id first among ties) and the same cumulative sums
    (XLA's cumsum over a whole 5,000-token row rounds its prefix differently)."""
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(size=(8, 5000)) * 4, np.round(rng.normal(size=(8, 5000)) * 2)])
    probabilities = keras.activations.softmax(keras.ops.convert_to_tensor(logits.astype("float32")))

    @compiled
    def candidates_and_full_sort(probabilities):
        candidates = top_p._top(probabilities, DEFAULT_CANDIDATES, DEFAULT_CANDIDATES)
        return candidates, top_p._top(probabilities, 5000, DEFAULT_CANDIDATES)

    candidates, full = candidates_and_full_sort(probabilities)
    for ours, theirs in zip(candidates, full):
        theirs = keras.ops.convert_to_numpy(theirs)[:, :DEFAULT_CANDIDATES]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), theirs)


def test_candidates_are_the_full_sort_s_first_entries_to_the_bit():
    check_candidates_are_the_full_sort_s_first_entries_to_the_bit()


@pytest.mark.parametrize("count,head", [(5000, 64), (200, 8), (70, 64), (64, 64)])
def test_the_blocked_cumulative_sums_are_the_sorted_row_s_running_mass(count, head):
    """`_top` sums in blocks of `head` (the last one padded): still every prefix's mass,
    for a count that is not a multiple of the block too."""
    probabilities = keras.ops.convert_to_tensor(np.random.default_rng(count).dirichlet(np.ones(count), size=3))
    cumulative, indices = top_p._top(keras.ops.cast(probabilities, "float32"), count, head)
    expected = np.cumsum(-np.sort(-keras.ops.convert_to_numpy(probabilities), axis=-1), axis=-1)
    assert keras.ops.shape(cumulative) == (3, count) and keras.ops.shape(indices) == (3, count)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cumulative), expected, rtol=1e-5, atol=1e-6)


def test_the_fallback_runs_only_in_steps_where_a_row_needs_it(monkeypatch):
    """The fallback's tokens poisoned (-1): steps whose rows all fit never show them,
    steps with a row that needs more show them in every row."""

    def poisoned(probabilities, p, uniform):
        return keras.ops.cast(uniform[:, 0] * 0 - 1, "int32")

    monkeypatch.setattr(top_p, "_nucleus_draw_unsorted", poisoned)
    logits = _logits("peaked", 4, seed=0)
    logits[::3, 2] = 0.0  # every third step, row 2 is flat: that step needs the fallback
    tokens = decode_table(ExactTopPSampler(p=0.5, seed=5, candidates=CANDIDATES), logits)
    needs_fallback = _needs_more_than(CANDIDATES, logits, 0.5).any(axis=1)
    np.testing.assert_array_equal(tokens == -1, np.broadcast_to(needs_fallback, tokens.shape))


def check_the_fallback_draws_the_full_sort_s_tokens() -> None:
    """The sort-free fallback against the sorted nucleus draw, same uniform numbers,
    compiled, at the reference's 5,000 tokens (peaked and near-flat rows) and on rows of
    exact ties (flat, and logits on a coarse grid), p = 0.5 and 0.9."""
    rng = np.random.default_rng(0)
    for kind, scale in [("normal", 0.3), ("normal", 4.0), ("flat", 0.0), ("tied", 2.0)]:
        logits = rng.normal(size=(64, 5000 if kind == "normal" else VOCABULARY)) * scale
        logits = np.round(logits) if kind == "tied" else logits
        probabilities = keras.activations.softmax(keras.ops.convert_to_tensor(logits.astype("float32")))
        uniform = keras.ops.convert_to_tensor(rng.random((64, 1)).astype("float32"))
        for p in (0.5, 0.9):

            @compiled
            def both(probabilities, uniform, p=p):
                count = keras.ops.shape(probabilities)[-1]
                sorted_draw = top_p._nucleus_draw(*top_p._top(probabilities, count, CANDIDATES), p, uniform)
                return top_p._nucleus_draw_unsorted(probabilities, p, uniform), sorted_draw

            unsorted, full_sort = both(probabilities, uniform)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(unsorted), keras.ops.convert_to_numpy(full_sort))


def test_the_fallback_draws_the_full_sort_s_tokens():
    check_the_fallback_draws_the_full_sort_s_tokens()


def _dyadic_rows() -> np.ndarray:
    """(3, VOCABULARY) rows whose probabilities are powers of two or 0, so that every
    running mass is exact in float32 whatever the order of summation: ties of four sizes
    shuffled among the ids (and zeros), a flat row, a top token of 0.5 over 199 ties."""
    rng = np.random.default_rng(4)
    groups = [[(4, 2**-4), (16, 2**-6), (32, 2**-8), (100, 2**-10)], [(VOCABULARY, 2**-8)], [(1, 0.5), (199, 2**-9)]]
    rows = []
    for group in groups:
        row = np.zeros(VOCABULARY, "float32")
        row[: sum(count for count, _ in group)] = np.concatenate([np.full(count, value) for count, value in group])
        rows.append(rng.permutation(row))
    return np.stack(rows)


def _sorted_draw(row: np.ndarray, p: float, uniform: float) -> int:
    """The full sort's inverse-CDF draw from the nucleus, lower id first among ties."""
    order = np.argsort(-row, kind="stable")
    running = np.cumsum(row[order])
    last = min(np.searchsorted(running, p, side="right"), len(row) - 1)  # first mass > p
    return order[np.searchsorted(running, uniform * running[last], side="right")]


def check_the_fallback_on_exact_ties() -> None:
    """The sort-free fallback against the full sort where every mass is exact, so no
    rounding excuses a difference: p and targets exactly where two tokens' running masses
    meet (the crossing is the later token, often a later tie of the same probability),
    p = 0.5 - 2**-12 making the nucleus's mass 0.5 so that uniform * mass hits every such
    boundary, nuclei that hold every token (p = 0.75 for the first row, and 1)."""
    rows = _dyadic_rows()
    uniform = np.tile(np.arange(64, dtype="float32") / 64, len(rows))[:, None]
    probabilities = np.repeat(rows, 64, axis=0)
    for p in (0.25, 0.5 - 2**-12, 0.75, 1.0):
        draw = compiled(lambda probabilities, uniform, p=p: top_p._nucleus_draw_unsorted(probabilities, p, uniform))
        tokens = keras.ops.convert_to_numpy(draw(probabilities, uniform))
        expected = [_sorted_draw(row, p, u) for row, u in zip(probabilities, uniform[:, 0])]
        np.testing.assert_array_equal(tokens, expected, err_msg=f"p = {p}")


def test_the_fallback_on_exact_ties():
    check_the_fallback_on_exact_ties()


def check_nth_true() -> None:
    """`_nth_true` against numpy: masks from empty but one to full, n from the first True
    to the last, and a batch where every n is 1 (no bisection at all)."""
    rng = np.random.default_rng(5)
    mask = rng.random((64, 300)) < rng.random((64, 1))
    mask[:, -1] |= ~mask.any(axis=-1)
    mask[0], mask[1] = True, np.arange(300) == 299
    counts = mask.sum(axis=-1)
    nth_true = compiled(top_p._nth_true)
    for n in (rng.integers(1, counts + 1), counts, np.ones_like(counts)):
        expected = [np.flatnonzero(row)[k - 1] for row, k in zip(mask, n)]
        found = nth_true(keras.ops.convert_to_tensor(mask), keras.ops.convert_to_tensor(n[:, None].astype("int32")))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(found), expected)


def test_nth_true():
    check_nth_true()


def test_tokens_follow_the_renormalized_nucleus():
    """p = 0.75 over (0.4, 0.3, 0.2, 0.1): keras_hub's nucleus is the first three tokens
    (0.4 + 0.3 <= 0.75 lets in the third), drawn as 4:3:2."""
    probabilities = np.array([0.4, 0.3, 0.2, 0.1] + [0.0] * 16, "float32")
    logits = np.log(np.maximum(probabilities, 1e-30))[None, None]
    tokens = decode_table(ExactTopPSampler(p=0.75, seed=0, candidates=2), np.tile(logits, (1, 6000, 1)))
    frequencies = np.bincount(tokens.ravel(), minlength=4)[:4] / tokens.size
    np.testing.assert_allclose(frequencies, [4 / 9, 3 / 9, 2 / 9, 0.0], atol=0.02)


def test_the_pipeline_s_top_p_is_the_exact_sampler_with_the_config_s_arguments():
    sampler = make_sampler("top_p", {"p": 0.5, "k": 40}, seed=3)
    assert isinstance(sampler, ExactTopPSampler)
    assert (sampler.p, sampler.k, sampler.seed, sampler.candidates) == (0.5, 40, 3, DEFAULT_CANDIDATES)
    assert ExactTopPSampler.from_config(sampler.get_config()).get_config() == sampler.get_config()


def check_cached_decode_gives_the_full_sort_s_tokens() -> None:
    """The pipeline's top_p (64 candidates) in the compiled cached decode, batch 1 and 16,
    on a model whose nucleus at p = 0.9 outgrows 64 of its 300 tokens in some steps and
    rows and not in others. Module-level so that the JAX test can run it."""
    cfg = GPTConfig(vocabulary_size=300, seq_len=32, embed_dim=32, ff_dim=32, num_heads=3, num_layers=2)
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 5, bias])
    for batch_size in (1, 16):
        generator = CachedGenerator(model, BOS, 24)
        fast = generator.generate(make_sampler("top_p", {"p": 0.9}, seed=7), batch_size)
        full = generator.generate(ExactTopPSampler(p=0.9, seed=7, candidates=cfg.vocabulary_size), batch_size)
        np.testing.assert_array_equal(fast, full)
        logits = keras.ops.convert_to_numpy(model(fast))[:, :-1]
        needs_fallback = _needs_more_than(DEFAULT_CANDIDATES, logits, 0.9)
        assert needs_fallback.any() and not needs_fallback.all(), "pick another scale: all steps alike"


def test_cached_decode_gives_the_full_sort_s_tokens_on_tensorflow():
    check_cached_decode_gives_the_full_sort_s_tokens()


def test_same_tokens_as_the_full_sort_on_jax():
    """Every case above, and the cached decode under jax.jit, in a JAX child process."""
    check = (
        "from tests import test_top_p as t\n"
        "for case in t.CASES: t.check_same_tokens_as_the_full_sort(*case)\n"
        "t.check_candidates_are_the_full_sort_s_first_entries_to_the_bit()\n"
        "t.check_the_fallback_draws_the_full_sort_s_tokens()\n"
        "t.check_the_fallback_on_exact_ties()\n"
        "t.check_nth_true()\n"
        "t.check_cached_decode_gives_the_full_sort_s_tokens()\n"
    )
    run_on_jax(check)


def test_p_1_with_the_largest_uniform_draws_a_token_of_the_row():
    """At p = 1 every step takes the fallback. A uniform just below 1 times a crossing mass
    summed in another order than the row's total may reach that total, where no token
    crosses: the draw was -1 in some rows before the mass was capped at the total."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    draw = tf.function(lambda pr, u: top_p._nucleus_draw_unsorted(pr, 1.0, u), jit_compile=True)
    for scale in (0.0, 0.3, 1.0, 3.0):
        logits = (rng.normal(size=(64 * 15, 5000)) * scale).astype("float32")
        probabilities = keras.activations.softmax(keras.ops.convert_to_tensor(logits))
        for k in (1, 2, 4, 16):
            uniform = np.full((64 * 15, 1), 1 - k * 2**-24, "float32")
            tokens = keras.ops.convert_to_numpy(draw(probabilities, uniform))
            assert (tokens >= 0).all() and (tokens < 5000).all(), (scale, k)
            picked = keras.ops.convert_to_numpy(probabilities)[np.arange(len(tokens)), tokens]
            assert (picked > 0).all(), (scale, k)
