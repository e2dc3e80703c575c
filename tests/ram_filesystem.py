"""Folders on TensorFlow's in-memory filesystem (`ram://`): like a `gs://` pipeline root's
paths, not on this machine's disk, and addressed by tf.io.gfile (so by TFX's fileio and
Keras), but without a network. Seen by this process only.

Beam has no `ram://` of its own: `RamFileSystem` below gives it one that delegates to
tf.io.gfile, so the Beam steps (TFX's example writers, TFDV's statistics) reach the same
files. Beam finds it by its scheme once this module is imported; no registration.
"""

import contextlib
import posixpath
from typing import Iterator, List, Tuple

import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem

from components.runtime.paths import copy_tree


@contextlib.contextmanager
def ram_folder(name: str) -> Iterator[str]:
    """`ram://<name>`, empty at first; removed on leaving the block (it holds memory)."""
    root = f"ram://{name}"
    _remove(root)
    tf.io.gfile.makedirs(root)  # else it would exist only as its files' prefix, which listdir misses
    try:
        yield root
    finally:
        _remove(root)


def _files_under(folder: str) -> Iterator[str]:
    """Every file under `folder`, at any depth. Not tf.io.gfile.walk: `ram://` lists by
    string prefix, so listdir(".../model") also names ".../model_run"'s files (as "_run"),
    and walk and rmtree trip over them; glob matches whole names."""
    for child in tf.io.gfile.glob(posixpath.join(folder, "*")):
        if tf.io.gfile.isdir(child):
            yield from _files_under(child)
        else:
            yield child


def _remove(folder: str) -> None:
    """rmtree that survives `ram://`'s prefix listing: what is inside first, by glob."""
    for child in tf.io.gfile.glob(posixpath.join(folder, "*")):
        (_remove if tf.io.gfile.isdir(child) else tf.io.gfile.remove)(child)
    if tf.io.gfile.exists(folder):
        tf.io.gfile.remove(folder)


class _File(tf.io.gfile.GFile):
    """A GFile that says whether it is closed and where a write is (`ram://` cannot tell),
    both of which Beam's writers ask."""

    closed = False
    _written = 0

    def write(self, data) -> None:
        super().write(data)
        self._written += len(tf.compat.as_bytes(data))

    def tell(self) -> int:
        return self._written if "w" in self.mode else super().tell()

    def close(self) -> None:
        super().close()
        self.closed = True


def _each(operation, *path_lists) -> None:
    """`operation` on each path (pair), raising one BeamIOError naming every failure, as
    Beam's own filesystems do."""
    failures = {}
    for paths in zip(*path_lists):
        try:
            operation(*paths)
        except Exception as e:  # pylint: disable=broad-except
            failures[paths if len(paths) > 1 else paths[0]] = e
    if failures:
        raise BeamIOError(f"{operation.__name__} failed", failures)


class RamFileSystem(FileSystem):
    """Beam's view of `ram://`: every operation is tf.io.gfile's."""

    @classmethod
    def scheme(cls) -> str:
        return "ram"

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> Tuple[str, str]:
        return posixpath.split(path)

    def mkdirs(self, path: str) -> None:
        if tf.io.gfile.exists(path):
            raise IOError(f"{path} already exists")
        tf.io.gfile.makedirs(path)

    def has_dirs(self) -> bool:
        return True

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        """Every file under the folder, at any depth (as Beam's local filesystem lists)."""
        for path in _files_under(dir_or_prefix):
            yield self.metadata(path)

    def _open(self, path: str, mode: str, compression_type: str):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        raw = _File(path, mode)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        tf.io.gfile.makedirs(posixpath.dirname(path))
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names: List[str], destination_file_names: List[str]) -> None:
        _each(copy_tree, source_file_names, destination_file_names)

    def rename(self, source_file_names: List[str], destination_file_names: List[str]) -> None:
        def rename(source: str, destination: str) -> None:
            tf.io.gfile.rename(source, destination, overwrite=True)

        _each(rename, source_file_names, destination_file_names)

    def exists(self, path: str) -> bool:
        return tf.io.gfile.exists(path)

    def size(self, path: str) -> int:
        return tf.io.gfile.stat(path).length

    def last_updated(self, path: str) -> float:
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path: str) -> str:
        return str(self.size(path))

    def metadata(self, path: str) -> FileMetadata:
        stat = tf.io.gfile.stat(path)
        return FileMetadata(path, stat.length, stat.mtime_nsec / 1e9)

    def delete(self, paths: List[str]) -> None:
        def delete(path: str) -> None:
            (tf.io.gfile.rmtree if tf.io.gfile.isdir(path) else tf.io.gfile.remove)(path)

        _each(delete, paths)
