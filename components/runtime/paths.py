"""Local paths and URIs (gs://) alike, for the libraries that read only local files.

Under a bucket pipeline root (every Vertex and Kubeflow run, Dataflow mode) every
artifact a component gets is a URI. TensorFlow, Keras and TFX's fileio read those; MLflow's
client uploads an artifact from local disk only, and a child process exchanges files by
plain file I/O. `local_path` stages a URI's file or folder into a temporary local folder
for them, and hands a local path through as it is.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from typing import Iterator
from urllib.parse import urlparse


def is_uri(path: str) -> bool:
    """gs://, s3://, ram://...: a path that is not on this machine's filesystem (a one-letter
    scheme is a Windows drive). The one test of it, for components and the pipeline alike."""
    return len(urlparse(path).scheme) > 1


def copy_tree(source: str, destination: str) -> None:
    """Copies the file or folder `source` to `destination` (its new name, parents made),
    each local or a URI."""
    from tfx.dsl.io import fileio  # pylint: disable=import-outside-toplevel  (the config loader imports is_uri)

    if not fileio.isdir(source):
        fileio.makedirs(posixpath.dirname(destination))
        fileio.copy(source, destination, overwrite=True)
        return
    for folder, _, files in fileio.walk(source):
        target = destination + folder[len(source) :]  # walk names every folder under `source` as given
        fileio.makedirs(target)
        for name in files:
            fileio.copy(os.path.join(folder, name), os.path.join(target, name), overwrite=True)


@contextlib.contextmanager
def local_path(path: str) -> Iterator[str]:
    """`path` itself when it is local (no copy); else a local copy of its file or folder,
    under the same base name (MLflow names a logged file by it), removed on leaving."""
    if not is_uri(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="minigpt-staged-") as folder:
        local = os.path.join(folder, posixpath.basename(path.rstrip("/")))
        copy_tree(path, local)
        yield local
