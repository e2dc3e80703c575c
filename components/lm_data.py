"""tf.data input for the language model: gzip TFRecords of tf.Example{text} -> id batches.

This is the TensorFlow-specific glue shared by the Trainer and the Evaluator; the model
code in `components.minigpt` stays backend-neutral.
"""

from __future__ import annotations

from typing import List

import tensorflow as tf

from components.errors import InputDataError
from components.formats import parse_text
from components.minigpt.tokenizer import TextCodec


def read_lines(file_patterns: List[str]) -> tf.data.Dataset:
    """The `text` feature of every example in gzip TFRecord shards, one string each."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise InputDataError(f"No TFRecord files match {file_patterns}; rerun TextExampleGen.")
    return tf.data.TFRecordDataset(files, compression_type="GZIP").map(parse_text)


def lm_dataset(
    file_patterns: List[str], codec: TextCodec, batch_size: int, split: str, shuffle_buffer: int = 0, seed: int = 0
) -> tf.data.Dataset:
    """(features, labels) batches as the reference builds them; fails clearly when empty."""
    ds = read_lines(file_patterns)
    if not any(True for _ in ds.take(1)):
        raise InputDataError(f"The {split} split ({file_patterns}) holds no examples.")
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    return (
        ds.batch(batch_size)
        .map(codec.features_and_labels, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
