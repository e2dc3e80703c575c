"""Tokenize: the Beam job writes the reference's token ids, once, and counts them."""

import collections
import os

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import Channel, standard_artifacts

from components.data.artifact_types import Vocabulary
from components.data.lm_data import read_labels
from components.minigpt.sequences import canonical_order, features_from_labels
from components.minigpt.tokenizer import TextCodec
from components.tokenize import executor
from components.tokenize.component import Tokenize
from components.vocab_gen.wordpiece import learn_vocabulary, pretokenize_lines
from tests.conftest import TINY_CORPUS, read_long_lines, write_examples

SEQ_LEN = 32  # configs/tiny.yaml: most tiny-corpus lines are longer, so truncation is exercised


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """The executor run on the tiny corpus's long lines with a vocabulary learned from them."""
    tmp_path = tmp_path_factory.mktemp("tokenize")
    splits = {
        "train": read_long_lines(os.path.join(TINY_CORPUS, "train.txt")),
        "eval": read_long_lines(os.path.join(TINY_CORPUS, "valid.txt")),
    }
    counts = collections.Counter(pretokenize_lines(splits["train"], lowercase=True))
    # A small vocabulary; characters it never saw (the snowman) become [UNK].
    vocab = learn_vocabulary(counts.items(), 120, ["[PAD]", "[UNK]", "[BOS]"])
    for lines in splits.values():
        lines.append("the snowman ☃ melts. ".encode() * 30)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    examples.set_int_custom_property("train_lines_kept", len(splits["train"]))
    examples.set_string_custom_property("train_sha256", "ab" * 32)
    for split, lines in splits.items():
        write_examples(tmp_path / "examples" / f"Split-{split}" / "data.gz", lines)
    vocabulary = Vocabulary()
    vocabulary.uri = str(tmp_path / "vocab")
    os.makedirs(vocabulary.uri)
    with open(os.path.join(vocabulary.uri, Vocabulary.FILE_NAME), "w") as f:
        f.write("\n".join(vocab) + "\n")
    token_ids = standard_artifacts.Examples()
    token_ids.uri = str(tmp_path / "token_ids")
    component = Tokenize(
        examples=Channel(type=standard_artifacts.Examples),
        vocabulary=Channel(type=Vocabulary),
        seq_len=SEQ_LEN,
        lowercase=True,
    )
    executor.Executor(BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"))).Do(
        {"examples": [examples], "vocabulary": [vocabulary]}, {"token_ids": [token_ids]}, component.exec_properties
    )
    return splits, vocab, token_ids


@pytest.mark.parametrize("split", ["train", "eval"])
def test_same_ids_as_the_reference_tokenizing_input(tokenized, split):
    """Token for token what TextCodec.features_and_labels (the reference's tf.data map) gives."""
    splits, vocab, token_ids = tokenized
    codec = TextCodec(vocab, SEQ_LEN)
    ref_features, ref_labels = (np.asarray(t) for t in codec.features_and_labels(tf.constant(splits[split])))
    labels = read_labels([os.path.join(token_ids.uri, f"Split-{split}", "*")], SEQ_LEN, split)
    order = np.lexsort(ref_labels.T[::-1])
    np.testing.assert_array_equal(labels, ref_labels[order])
    np.testing.assert_array_equal(features_from_labels(labels, codec.bos_id), ref_features[order])
    np.testing.assert_array_equal(canonical_order(ref_labels), labels)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_counts_are_recorded_per_split(tokenized, split):
    splits, vocab, token_ids = tokenized
    full = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocab, lowercase=True)(splits[split])
    kept = [ids[:SEQ_LEN] for ids in full]
    props = {k: token_ids.get_int_custom_property(k) for k in token_ids.mlmd_artifact.custom_properties
             if not k.endswith("sha256")}  # fmt: skip
    assert props[f"{split}_sequences"] == len(splits[split])
    assert props[f"{split}_tokens"] == sum(map(len, kept))
    assert props[f"{split}_unk_tokens"] == sum(ids.count(1) for ids in kept) > 0
    assert props[f"{split}_truncated_sequences"] == sum(len(ids) > SEQ_LEN for ids in full) > 0
    assert props["train_lines_kept"] == len(splits["train"])  # carried over from the text Examples
    assert token_ids.get_string_custom_property("train_sha256") == "ab" * 32
    assert token_ids.split_names == '["train", "eval"]'


def test_component_rejects_a_non_positive_sequence_length():
    with pytest.raises(ValueError, match="seq_len must be positive"):
        Tokenize(Channel(type=standard_artifacts.Examples), Channel(type=Vocabulary), seq_len=0, lowercase=True)
