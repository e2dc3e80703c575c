"""Artifact types this project adds to TFX's standard ones."""

from tfx.types import artifact


class Vocabulary(artifact.Artifact):
    """A WordPiece vocabulary: a directory holding `vocab.txt`, one token per line.

    TFX's value artifacts (`String`, ...) have a *file* URI, which Beam cannot write a
    directory into, so the vocabulary gets a type of its own.
    """

    TYPE_NAME = "minigpt.Vocabulary"
    PROPERTIES = {}

    FILE_NAME = "vocab.txt"
