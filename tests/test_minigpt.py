"""The model, its decoders and the perplexity computation (pure Keras, no TFX)."""

import inspect
import math

import keras
import keras_hub
import numpy as np
import pytest

from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.callbacks import KeepBestEpoch
from components.minigpt.decoders import DECODERS
from components.minigpt.decoding import UncachedGenerator, make_sampler
from components.minigpt.model import GPTConfig, build_model, forward_flops, with_hidden_states
from components.minigpt.multiprocess import epoch_batches
from components.minigpt.perplexity import token_weighted_perplexity
from components.minigpt.sequences import batches, batches_per_epoch, canonical_order, features_from_labels
from components.minigpt.tokenizer import TextCodec

VOCAB = ["[PAD]", "[UNK]", "[BOS]"] + list("abcdefghijklmnopqrstuvwxyz") + ["the", "##s"]
TINY = GPTConfig(vocabulary_size=len(VOCAB), seq_len=16, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
DECODERS_PARAMS = {
    "greedy": {},
    "beam": {"num_beams": 3},
    "random": {},
    "top_k": {"k": 3},
    "top_p": {"p": 0.5},
    "contrastive": {"k": 3, "alpha": 0.6},
}
# The reference's method and the cached, compiled one: the same contract, the same tests.
GENERATORS = [UncachedGenerator, CachedGenerator]


def test_reference_model_has_the_reference_parameter_count():
    model = build_model(GPTConfig())
    assert model.count_params() == 3_387_266
    assert model.get_layer("embedding").count_params() == 1_312_768
    assert model.get_layer("logits").count_params() == 1_285_000


def test_token_logits_compute_the_reference_dense_layer_and_its_gradients(tmp_path):
    """Same seed, same weights; same logits and kernel gradient as the reference's Dense,
    over (B, T, D) and over a single position (B, D) as the cached decoder feeds it; and
    the model round-trips through a .keras file."""
    keras.utils.set_random_seed(3)
    ours = build_model(TINY)
    keras.utils.set_random_seed(3)
    reference = build_model(TINY, reference_logits=True)
    assert type(reference.get_layer("logits")) is keras.layers.Dense
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    hidden = np.random.default_rng(0).normal(size=(3, 5, TINY.embed_dim)).astype("float32")
    for x in (hidden, hidden[:, 0]):
        np.testing.assert_allclose(ours.get_layer("logits")(x), reference.get_layer("logits")(x), rtol=1e-5, atol=1e-6)
    tokens = np.array([[2, 5, 6, 0], [2, 7, 7, 9]], dtype="int32")
    labels = np.array([[5, 6, 0, 0], [7, 7, 9, 4]], dtype="int32")
    for model in (ours, reference):
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # One SGD step from equal weights: equal weights after it means equal gradients.
    ours.train_on_batch(tokens, labels)
    reference.train_on_batch(tokens, labels)
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    ours.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras")(tokens), ours(tokens), rtol=1e-6)


def test_model_is_sized_by_the_learned_vocabulary():
    model = build_model(GPTConfig(vocabulary_size=4558))
    assert model.output_shape == (None, None, 4558)


def test_hidden_state_model_shares_weights():
    model = build_model(TINY)
    tokens = np.array([[2, 5, 6, 0]], dtype="int32")
    logits, hidden = with_hidden_states(model)(tokens)
    np.testing.assert_allclose(logits, model(tokens), rtol=1e-5)
    assert hidden.shape == (1, 4, TINY.embed_dim)


def test_codec_shifts_labels_behind_bos():
    codec = TextCodec(VOCAB, seq_len=6)
    features, labels = codec.features_and_labels(keras.ops.convert_to_tensor(["the cats"]))
    # "cats" has no ##-pieces in this vocabulary, so it becomes [UNK].
    labels = np.asarray(labels)[0]
    features = np.asarray(features)[0]
    assert features[0] == codec.bos_id
    np.testing.assert_array_equal(features[1:], labels[:-1])
    assert codec.detokenize(np.array([[2, 29, 0, 0]], dtype="int32")) == ["[BOS] the"]


def _model_that_always_says(token_id: int) -> keras.Model:
    """A model whose logits put (almost) all mass on `token_id`, whatever the input."""
    model = build_model(TINY)
    kernel, bias = model.get_layer("logits").get_weights()
    bias = np.full_like(bias, -20.0)
    bias[token_id] = 20.0
    model.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    return model


@pytest.mark.parametrize("generator_class", GENERATORS)
@pytest.mark.parametrize("name", sorted(DECODERS_PARAMS))
def test_every_decoder_follows_a_certain_model(name, generator_class):
    generator = generator_class(_model_that_always_says(7), bos_id=2, num_tokens=5)
    # Contrastive search trades probability for novelty by design (alpha); with alpha=0 it
    # must follow the model like the others.
    params = {"k": 3, "alpha": 0.0} if name == "contrastive" else DECODERS_PARAMS[name]
    ids = generator.generate(make_sampler(name, params, seed=1))
    np.testing.assert_array_equal(ids, [[2, 7, 7, 7, 7, 7]])


@pytest.mark.parametrize("generator_class", GENERATORS)
@pytest.mark.parametrize("name", sorted(DECODERS_PARAMS))
def test_every_decoder_generates_the_requested_length(name, generator_class):
    generator = generator_class(build_model(TINY), bos_id=2, num_tokens=6)
    ids = generator.generate(make_sampler(name, DECODERS_PARAMS[name], seed=1))
    assert ids.shape == (1, 7) and ids[0, 0] == 2


@pytest.mark.parametrize("generator_class", GENERATORS)
def test_seeded_decoders_repeat_themselves(generator_class):
    generator = generator_class(build_model(TINY), bos_id=2, num_tokens=8)
    first = generator.generate(make_sampler("random", {}, seed=3))
    again = generator.generate(make_sampler("random", {}, seed=3))
    np.testing.assert_array_equal(first, again)


def test_unknown_decoder_is_rejected():
    with pytest.raises(ValueError, match="Unknown decoder 'nucleus'"):
        make_sampler("nucleus", {}, seed=0)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_registry_matches_the_keras_hub_samplers(name):
    """Every registered parameter is a keyword of the sampler; seeded ones take a seed."""
    decoder = DECODERS[name]
    sampler_class = getattr(keras_hub.samplers, decoder.sampler)
    accepted = set(inspect.signature(sampler_class.__init__).parameters)
    assert set(decoder.params) <= accepted
    assert set(decoder.counts_tokens) | set(decoder.fractions) <= set(decoder.params)
    assert ("seed" in accepted) == decoder.seeded
    assert isinstance(make_sampler(name, DECODERS_PARAMS[name], seed=0), sampler_class)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = build_model(TINY)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    features = np.array([[2, 5, 6, 0], [2, 5, 0, 0]], dtype="int32")
    labels = np.array([[5, 6, 7, 0], [5, 0, 0, 0]], dtype="int32")
    perplexity, tokens = token_weighted_perplexity(model, [(features, labels)])
    assert tokens == 4  # [PAD] labels are not counted
    assert perplexity == pytest.approx(len(VOCAB), rel=1e-4)


def test_perplexity_weights_tokens_not_batches():
    model = _model_that_always_says(7)
    # Batch 1: 3 certain tokens (NLL ~0). Batch 2: 1 impossible token (NLL ~40).
    batches = [
        (np.array([[2, 7, 7]], dtype="int32"), np.array([[7, 7, 7]], dtype="int32")),
        (np.array([[2, 0, 0]], dtype="int32"), np.array([[5, 0, 0]], dtype="int32")),
    ]
    perplexity, tokens = token_weighted_perplexity(model, batches)
    assert tokens == 4
    assert math.log(perplexity) == pytest.approx(40.0 / 4, rel=1e-3)


def test_features_are_bos_then_the_labels_shifted_right():
    labels = np.array([[5, 6, 7, 8], [5, 6, 0, 0]], dtype="int32")
    np.testing.assert_array_equal(features_from_labels(labels, bos_id=2), [[2, 5, 6, 7], [2, 5, 6, 0]])


def test_canonical_order_sorts_rows_by_their_ids_and_batches_keep_it():
    labels = np.array([[5, 6, 0], [3, 9, 9], [5, 1, 0]], dtype="int32")
    ordered = canonical_order(labels)
    np.testing.assert_array_equal(ordered, [[3, 9, 9], [5, 1, 0], [5, 6, 0]])
    np.testing.assert_array_equal(canonical_order(labels[::-1]), ordered)
    got = list(batches(ordered + 10, ordered, batch_size=2))
    assert [len(labels) for _, labels in got] == [2, 1]
    np.testing.assert_array_equal(got[1][0], ordered[2:] + 10)


@pytest.mark.parametrize("rows", [127, 128, 129])
def test_batches_per_epoch_counts_the_steps_fit_and_the_multi_process_loop_take(rows):
    """What the learning-rate schedule is sized by: Keras' fit keeps a partial batch, the
    multi-process loop drops it."""
    labels = np.zeros((rows, 4), dtype="int32")
    assert batches_per_epoch(rows, 64) == len(list(batches(labels, labels, 64)))
    assert batches_per_epoch(rows, 64, keep_partial=False) == len(epoch_batches(rows, 64, seed=0, epoch=0))
    # train.steps_per_epoch caps an epoch; one larger than the data does not lengthen it.
    assert batches_per_epoch(rows, 64, max_steps=1) == 1
    assert batches_per_epoch(rows, 64, max_steps=100) == len(list(batches(labels, labels, 64)))
    assert batches_per_epoch(rows, 64, keep_partial=False, max_steps=100) == len(
        epoch_batches(rows, 64, seed=0, epoch=0, max_steps=100)
    )


def test_forward_flops_count_every_matmul_weight_twice_per_token_plus_attention():
    cfg = GPTConfig()
    model = build_model(cfg)
    # Every kernel (not biases, norms or embeddings) is one multiply-add per token.
    kernels = sum(int(np.prod(w.shape)) for w in model.weights if w.path.endswith("kernel"))
    heads_dim = (cfg.embed_dim // cfg.num_heads) * cfg.num_heads
    attention = cfg.num_layers * 2 * 2 * cfg.seq_len * heads_dim  # scores and weighted values
    assert forward_flops(cfg, batch_size=1) == cfg.seq_len * (2 * kernels + attention)
    assert 100e9 < 3 * forward_flops(cfg, batch_size=64) < 110e9  # the matmuls of a step of 64 x 128 tokens


def test_keep_best_epoch_restores_the_weights_of_the_lowest_val_perplexity():
    model = build_model(TINY)
    best = KeepBestEpoch("val_perplexity")
    best.set_model(model)
    snapshots = []
    for epoch, perplexity in enumerate([9.0, 5.0, 7.0]):
        model.set_weights([w + 1.0 for w in model.get_weights()])  # "training"
        snapshots.append(model.get_weights())
        best.on_epoch_end(epoch, {"val_perplexity": perplexity, "loss": 1.0})
    best.on_train_end()
    assert (best.best_epoch, best.best_value) == (2, 5.0)
    for got, want in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(got, want)
