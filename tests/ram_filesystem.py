"""Folders on TensorFlow's in-memory filesystem (`ram://`): like a `gs://` pipeline root's
paths, not on this machine's disk, and addressed by tf.io.gfile (so by TFX's fileio and
Keras), but without a network. Seen by this process only."""

import contextlib
from typing import Iterator

import tensorflow as tf


@contextlib.contextmanager
def ram_folder(name: str) -> Iterator[str]:
    """`ram://<name>`, empty at first; removed on leaving the block (it holds memory)."""
    root = f"ram://{name}"
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)
    try:
        yield root
    finally:
        if tf.io.gfile.exists(root):
            tf.io.gfile.rmtree(root)
