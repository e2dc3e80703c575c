"""The tf.data input shared by the Trainer and the Evaluator: records -> (features, labels)."""

import numpy as np
import pytest

from components.errors import InputDataError
from components.lm_data import lm_dataset, read_lines
from components.minigpt.tokenizer import TextCodec
from tests.conftest import write_examples

VOCAB = ["[PAD]", "[UNK]", "[BOS]", "the", "cat", "sat", "on", "mat", "."]
LINES = [b"the cat sat .", b"the mat .", b"on the cat", b"cat cat", b"the"]


@pytest.fixture
def shards(tmp_path):
    """The lines split over two gzip shards, as Beam writes a split."""
    write_examples(tmp_path / "Split-eval" / "data-00000-of-00002.gz", LINES[:3])
    write_examples(tmp_path / "Split-eval" / "data-00001-of-00002.gz", LINES[3:])
    return [str(tmp_path / "Split-eval" / "*")]


def test_read_lines_reads_every_shard_in_order(shards):
    assert [t.numpy() for t in read_lines(shards)] == LINES


def test_batches_are_bos_shifted_features_and_padded_labels(shards):
    codec = TextCodec(VOCAB, seq_len=5)
    batches = list(lm_dataset(shards, codec, batch_size=2, split="eval"))
    assert [len(features) for features, _ in batches] == [2, 2, 1]
    features, labels = (np.asarray(t) for t in batches[0])
    np.testing.assert_array_equal(labels, [[3, 4, 5, 8, 0], [3, 7, 8, 0, 0]])
    np.testing.assert_array_equal(features, [[2, 3, 4, 5, 8], [2, 3, 7, 8, 0]])


def test_shuffling_is_seeded_and_keeps_every_line(shards):
    codec = TextCodec(VOCAB, seq_len=5)

    def labels(seed):
        ds = lm_dataset(shards, codec, batch_size=5, split="train", shuffle_buffer=5, seed=seed)
        return np.asarray(next(iter(ds))[1])

    np.testing.assert_array_equal(labels(3), labels(3))
    assert sorted(map(tuple, labels(3))) == sorted(map(tuple, labels(4)))


def test_missing_and_empty_splits_fail_clearly(tmp_path):
    codec = TextCodec(VOCAB, seq_len=5)
    with pytest.raises(InputDataError, match=r"No TFRecord files match .*nowhere.*; rerun TextExampleGen"):
        lm_dataset([str(tmp_path / "nowhere" / "*")], codec, 2, "eval")
    write_examples(tmp_path / "Split-train" / "data.gz", [])
    with pytest.raises(InputDataError, match=r"The train split .* holds no examples"):
        lm_dataset([str(tmp_path / "Split-train" / "*")], codec, 2, "train")
