"""Artifact types this project adds to TFX's standard ones."""

from typing import List

from tfx.dsl.io import fileio
from tfx.types import artifact


class Vocabulary(artifact.Artifact):
    """A WordPiece vocabulary: a directory holding `vocab.txt`, one token per line.

    TFX's value artifacts (`String`, ...) have a *file* URI, which Beam cannot write a
    directory into, so the vocabulary gets a type of its own.
    """

    TYPE_NAME = "minigpt.Vocabulary"
    PROPERTIES = {}

    FILE_NAME = "vocab.txt"


def read_vocabulary(path: str) -> List[str]:
    """Tokens of a vocab.txt file, in id order; local or remote (gs://) paths."""
    with fileio.open(path, "r") as f:
        return f.read().splitlines()
