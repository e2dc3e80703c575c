"""The on-disk formats that components hand to each other, in one place.

A writer and its readers import these names from here, never from each other: the text
Examples' record layout is shared by TextExampleGen (writer), VocabGen and Tokenize
(readers); the token-id Examples by Tokenize (writer), the Trainer and the Evaluator
(readers); the evaluation file by the Evaluator (writer) and the run summary (reader).
Importing this module costs nothing: TensorFlow is imported only by the functions that
build or parse records.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

# The vocabulary (vocab.txt, one token a line) starts with these reserved tokens: [PAD]
# is id 0 (padding and the masks), [UNK] the tokenizer's out-of-vocabulary token, [BOS]
# the start of every line and prompt.
PAD_TOKEN, UNK_TOKEN, BOS_TOKEN = "[PAD]", "[UNK]", "[BOS]"
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN)

# Examples: gzip TFRecords of tf.train.Example{text: bytes}, one paragraph each.
TEXT_FEATURE = "text"
# Per-split line counts TextExampleGen records on the Examples artifact, as
# `<split>_<counter>` integer custom properties (e.g. `train_lines_kept`). Of the lines
# kept by the length filter, `lines_duplicate` were then dropped as exact copies of
# another line of the split (`data.dedup: exact`; else 0): it holds lines_kept minus those.
LINE_COUNTERS = ("lines_read", "lines_kept", "lines_too_short", "lines_too_long", "lines_not_utf8", "lines_duplicate")
# Where each split came from, as `<split>_<name>` string custom properties: the file
# pattern read (path or URI), the sha256 of its files' bytes in name order, and the
# histogram of its line lengths (JSON: bucket's lowest byte length -> lines). Tokenize
# carries them (and the line counts) over; the Trainer logs them as MLflow datasets.
SOURCE_PROPERTIES = ("source", "sha256", "length_histogram")
# Line-length buckets of that histogram: [0, 50), [50, 100), ... and [2000, inf).
LENGTH_BUCKET_BYTES, LENGTH_BUCKETS = 50, 41


def files_sha256(paths: Sequence[str]) -> str:
    """sha256 of the bytes of `paths` (local or gs://) read one after the other: a corpus's
    identity whatever its modification times (a split's `sha256`, a pinned zip's digest)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    digest = hashlib.sha256()
    for path in paths:
        with tf.io.gfile.GFile(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def length_bucket(num_bytes: int) -> int:
    """The lowest byte length of the histogram bucket a line of `num_bytes` falls in."""
    return min(num_bytes // LENGTH_BUCKET_BYTES, LENGTH_BUCKETS - 1) * LENGTH_BUCKET_BYTES


# Token-id Examples: gzip TFRecords of tf.train.Example{ids: int64 list}, one per line:
# the line's WordPiece ids, truncated to the model's sequence length, without [BOS] or
# padding (the language-model features and labels are cut from them).
IDS_FEATURE = "ids"
# Per-split counts Tokenize records as `<split>_<counter>` integer custom properties.
TOKEN_COUNTERS = ("sequences", "tokens", "unk_tokens", "truncated_sequences")

# ModelEvaluation: the Evaluator's results, a JSON file in the artifact's directory.
EVALUATION_FILE = "evaluation.json"


def text_to_example(text: bytes):
    """One line of UTF-8 text as a tf.train.Example with a single bytes feature."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.train.Example(
        features=tf.train.Features(
            feature={TEXT_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))}
        )
    )


def example_text(serialized: bytes) -> bytes:
    """The text of one serialized tf.train.Example (in Python, e.g. on a Beam worker)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.train.Example.FromString(serialized).features.feature[TEXT_FEATURE].bytes_list.value[0]


def parse_text(serialized):
    """The text of one serialized tf.train.Example, as a graph op (inside tf.data)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.parse_single_example(serialized, {TEXT_FEATURE: tf.io.FixedLenFeature([], tf.string)})[TEXT_FEATURE]


def ids_to_example(ids):
    """One line's token ids as a tf.train.Example with a single int64 feature."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.train.Example(
        features=tf.train.Features(feature={IDS_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=ids))})
    )


def parse_ids(serialized):
    """A batch of serialized token-id Examples -> a RaggedTensor of int32 ids (graph op)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    ids = tf.io.parse_example(serialized, {IDS_FEATURE: tf.io.RaggedFeature(tf.int64)})[IDS_FEATURE]
    return tf.cast(ids, tf.int32)
