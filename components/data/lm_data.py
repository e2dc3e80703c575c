"""Reads the token-id Examples that Tokenize writes into NumPy arrays for training.

This is the TensorFlow-specific glue shared by the Trainer and the Evaluator (TFRecord
parsing); what is built from the arrays (`components.minigpt.sequences`) and the model
are backend-neutral. The splits are read whole into memory: at the reference's sizes
(SimpleBooks-92: ~200k lines of 128 ids, ~100 MB as int32) that is the fastest input a
training step can have, on CPU or GPU.
"""

from __future__ import annotations

from typing import List

import numpy as np
import tensorflow as tf

from components.data.formats import parse_ids
from components.minigpt.sequences import canonical_order
from components.runtime.errors import InputDataError

READ_BATCH = 4096


def read_labels(file_patterns: List[str], seq_len: int, split: str) -> np.ndarray:
    """(N, seq_len) int32 token ids, [PAD]-padded, in canonical order; fails clearly when empty."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise InputDataError(f"No TFRecord files match {file_patterns}; rerun the pipeline's Tokenize step.")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(READ_BATCH).map(parse_ids)
    parts = [ids.to_tensor(shape=[None, seq_len]).numpy() for ids in ds]
    labels = np.concatenate(parts) if parts else np.zeros((0, seq_len), dtype="int32")
    if len(labels) == 0:
        raise InputDataError(f"The {split} split ({file_patterns}) holds no examples.")
    return canonical_order(labels)
