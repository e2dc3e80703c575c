"""Reading Tokenize's token-id Examples into the arrays the Trainer and Evaluator use."""

import numpy as np
import pytest

from components.data.lm_data import read_labels
from components.runtime.errors import InputDataError
from tests.conftest import write_token_examples

ROWS = [[3, 4, 5, 8], [3, 7, 8], [6, 3, 4, 9, 9, 9], [4, 4], [3]]


@pytest.fixture
def shards(tmp_path):
    """The rows split over two gzip shards, as Beam writes a split."""
    write_token_examples(tmp_path / "Split-eval" / "data-00001-of-00002.gz", ROWS[:3])
    write_token_examples(tmp_path / "Split-eval" / "data-00000-of-00002.gz", ROWS[3:])
    return [str(tmp_path / "Split-eval" / "*")]


def test_every_row_padded_to_seq_len_in_canonical_order(shards):
    labels = read_labels(shards, seq_len=6, split="eval")
    assert labels.dtype == np.int32 and labels.shape == (5, 6)
    np.testing.assert_array_equal(
        labels,
        [[3, 0, 0, 0, 0, 0], [3, 4, 5, 8, 0, 0], [3, 7, 8, 0, 0, 0], [4, 4, 0, 0, 0, 0], [6, 3, 4, 9, 9, 9]],
    )


def test_order_does_not_depend_on_the_shards(shards, tmp_path):
    write_token_examples(tmp_path / "other" / "data.gz", ROWS[::-1])
    np.testing.assert_array_equal(
        read_labels(shards, 6, "eval"), read_labels([str(tmp_path / "other" / "*")], 6, "eval")
    )


def test_missing_and_empty_splits_fail_clearly(tmp_path):
    with pytest.raises(InputDataError, match=r"No TFRecord files match .*nowhere.*; rerun the pipeline's Tokenize"):
        read_labels([str(tmp_path / "nowhere" / "*")], 5, "eval")
    write_token_examples(tmp_path / "Split-train" / "data.gz", [])
    with pytest.raises(InputDataError, match=r"The train split .* holds no examples"):
        read_labels([str(tmp_path / "Split-train" / "*")], 5, "train")
