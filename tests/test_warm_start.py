"""Warm start: a fit begins from the champion's weights only when they fit its model.

The champion here is a bundle on disk (`Champion`); its lookup in MLflow is tested with
the Evaluator and end to end."""

import dataclasses

import numpy as np

from components.minigpt.model import GPTConfig, build_model
from components.serving import model_bundle
from components.tracking.champion import Champion
from components.trainer.warm_start import load_champion_weights

VOCAB = ["[PAD]", "[UNK]", "[BOS]", "the", "cat", "sat", "on", "mat", "."]
GPT = GPTConfig(vocabulary_size=len(VOCAB), seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)


def _champion(tmp_path):
    model = build_model(GPT)
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    bundle = tmp_path / "champion" / "Format-Serving"
    manifest = model_bundle.Manifest(GPT, True, "champion-run", "champion-pipeline-run", {})
    model_bundle.export(str(bundle), model, manifest, str(tmp_path / "vocab.txt"), generate_tokens=4)
    return Champion("4", str(bundle), None), model


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_a_model_of_the_same_sizes_and_vocabulary_starts_from_the_champions_weights(tmp_path):
    bundle, champion = _champion(tmp_path)
    model = build_model(GPT)
    assert not _same(model, champion)  # a fresh draw
    start = load_champion_weights(model, bundle, VOCAB, GPT)
    assert _same(model, champion)
    assert start.champion == "models:/minigpt/4" and start.reason == "from the champion's weights (models:/minigpt/4)"


def test_another_vocabulary_or_other_sizes_train_from_scratch_saying_why(tmp_path):
    bundle, champion = _champion(tmp_path)
    other_vocab = [*VOCAB[:-1], "!"]
    model = build_model(GPT)
    start = load_champion_weights(model, bundle, other_vocab, GPT)
    assert start.champion is None and not _same(model, champion)
    assert start.reason == "the champion's vocabulary differs from this run's: trained from scratch"
    wider = dataclasses.replace(GPT, ff_dim=16)
    start = load_champion_weights(build_model(wider), bundle, VOCAB, wider)
    assert start.reason == "the champion's sizes differ (ff_dim 8 -> 16): trained from scratch"
    start = load_champion_weights(build_model(GPT), None, VOCAB, GPT)
    assert (start.champion, start.reason) == (None, "no champion yet: trained from scratch")
