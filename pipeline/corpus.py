"""Where the text comes from: the embedded corpus, a directory, or the SimpleBooks zip.

Every source resolves to one directory (local or gs://) holding the split files in
SimpleBooks' layout: one paragraph per line, UTF-8, `train.txt` / `valid.txt`.
"""

from __future__ import annotations

import os
from typing import Optional
from urllib.parse import urlparse

from components.errors import InputDataError

# gutenberg-small: 10 public-domain books in SimpleBooks' layout (see SOURCE.md there).
EMBEDDED_CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embedded_corpus")
EMBEDDED = "embedded"
# The reference's download; `make run` never fetches it (configs/simplebooks92.yaml does).
SIMPLEBOOKS_URL = "https://dldata-public.s3.us-east-2.amazonaws.com/simplebooks.zip"
DOWNLOAD_SCHEMES = ("http", "https", "file")


def is_download(corpus: str) -> bool:
    return urlparse(corpus).scheme in DOWNLOAD_SCHEMES


def download_and_extract(url: str, subdir: str, cache_dir: str) -> str:
    """Fetches a zip once into `cache_dir/datasets`, extracts it, returns `subdir` in it.

    A second call finds the cached zip and downloads nothing.
    """
    import keras  # pylint: disable=import-outside-toplevel

    cache_dir = os.path.expanduser(cache_dir)
    # get_file silently falls back to /tmp/.keras when cache_dir does not exist yet.
    os.makedirs(cache_dir, exist_ok=True)
    try:
        extracted = keras.utils.get_file(origin=url, extract=True, cache_dir=cache_dir, cache_subdir="datasets")
    except Exception as e:  # urllib/zipfile raise many types; all mean "could not fetch"
        raise InputDataError(
            f"data.corpus: could not download or extract {url} ({e.__class__.__name__}: {e}); "
            "check the URL and network, or point data.corpus at a local copy."
        ) from None
    found = _find_subdir(extracted, subdir)
    if found is None:
        raise InputDataError(
            f"data.corpus: {url} has no folder {subdir!r} (extracted to {extracted}); "
            "set data.zip_subdir to the folder that holds the split files."
        )
    return found


def _find_subdir(root: str, name: str, depth: int = 2) -> Optional[str]:
    """`root/name` or `root/<one level>/name` (zips often wrap everything in a folder)."""
    if os.path.basename(os.path.normpath(root)) == name:
        return root
    candidate = os.path.join(root, name)
    if os.path.isdir(candidate):
        return candidate
    if depth > 1 and os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            found = (
                _find_subdir(os.path.join(root, entry), name, depth - 1)
                if os.path.isdir(os.path.join(root, entry))
                else None
            )
            if found:
                return found
    return None


def resolve_corpus_dir(corpus: str, zip_subdir: str, cache_dir: str) -> str:
    """The directory holding the split files for config value `data.corpus`."""
    if corpus == EMBEDDED:
        return EMBEDDED_CORPUS_DIR
    if is_download(corpus):
        return download_and_extract(corpus, zip_subdir, cache_dir)
    if urlparse(corpus).scheme:  # gs://, s3://, ...: read by Beam/TF filesystems
        return corpus
    path = os.path.abspath(os.path.expanduser(corpus))
    if not os.path.isdir(path):
        raise InputDataError(
            f"data.corpus: {path} is not a directory; point it at a folder holding the split "
            "files, or use 'embedded' or a zip URL."
        )
    return path


def check_split_file(corpus_dir: str, file_name: str, key: str) -> str:
    """Fails early, naming the file, if a split file is missing or empty."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// support)

    path = os.path.join(corpus_dir, file_name)
    if not tf.io.gfile.exists(path):
        raise InputDataError(f"{key}: split file {path} does not exist; check data.corpus and {key}.")
    if tf.io.gfile.isdir(path) or tf.io.gfile.stat(path).length == 0:
        raise InputDataError(f"{key}: split file {path} is empty; it needs one paragraph per line.")
    return path
