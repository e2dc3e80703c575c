"""Artifact types this project adds to TFX's standard ones."""

from typing import List

from tfx.dsl.io import fileio
from tfx.types import artifact


class Vocabulary(artifact.Artifact):
    """A WordPiece vocabulary: a directory holding `vocab.txt`, one token per line.

    TFX's value artifacts (`String`, ...) have a *file* URI, which Beam cannot write a
    directory into, so the vocabulary gets a type of its own.
    """

    # TFX's Kubeflow/Vertex entrypoint imports a custom type by its name, which its
    # compiler allows only as `<namespace>.<Class>`: `components` re-exports this class.
    TYPE_NAME = "components.Vocabulary"
    PROPERTIES = {}

    FILE_NAME = "vocab.txt"


def read_vocabulary(path: str) -> List[str]:
    """Tokens of a vocab.txt file, in id order; local or remote (gs://) paths."""
    with fileio.open(path, "r") as f:
        return f.read().splitlines()


class DataChecks(artifact.Artifact):
    """DataCheck's results: a directory holding `checks.json`, every check's name, value,
    threshold and whether it passed (for the run report)."""

    TYPE_NAME = "components.DataChecks"
    PROPERTIES = {}

    FILE_NAME = "checks.json"
