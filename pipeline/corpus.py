"""Where the text comes from: the embedded corpus, a directory, or the SimpleBooks zip.

Every source resolves to one directory (local or gs://) holding the split files in
SimpleBooks' layout: one paragraph per line, UTF-8, `train.txt` / `valid.txt`.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Dict, Iterator, List, Optional
from urllib.parse import urlparse

from components.data.formats import files_sha256
from components.runtime.errors import InputDataError, first_line
from pipeline.config import EMBEDDED_CORPUS

# gutenberg-small: 10 public-domain books in SimpleBooks' layout (see SOURCE.md there).
EMBEDDED_CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embedded_corpus")
EMBEDDED = EMBEDDED_CORPUS
DOWNLOAD_SCHEMES = ("http", "https", "file")
# Seconds without a byte from the server before a download is given up.
DOWNLOAD_TIMEOUT_S = 60
# The first bytes of a gzip file, whatever its name.
GZIP_MAGIC = b"\x1f\x8b"
# What a failed fetch raises: the user can fix these (URL, network, server).
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def is_download(corpus: str) -> bool:
    return urlparse(corpus).scheme in DOWNLOAD_SCHEMES


def download_and_extract(url: str, subdir: str, cache_dir: str, sha256: Optional[str] = None) -> str:
    """Fetches a zip once into `cache_dir/datasets`, extracts it, returns `subdir` in it.

    A second call finds the extracted copy and downloads nothing. The zip and the
    extracted folder appear under their final names only once complete, so an
    interrupted run never leaves a partial copy that a later run would trust. With
    `sha256`, the zip (downloaded or cached) must have that digest, or it and its
    extracted copy are removed and the run stops.

    Raises:
      InputDataError: the URL cannot be fetched, the file is not a safe zip, or it has
        no folder `subdir`. Other errors (a bug, a permission problem) keep their cause.
    """
    datasets = os.path.join(os.path.expanduser(cache_dir), "datasets")
    os.makedirs(datasets, exist_ok=True)
    zip_path = os.path.join(datasets, os.path.basename(urlparse(url).path) or "corpus.zip")
    extracted = os.path.splitext(zip_path)[0]
    if sha256 is not None:
        _check_sha256(url, zip_path, extracted, sha256)
    if not os.path.isdir(extracted):
        try:
            if not os.path.exists(zip_path):
                _download(url, zip_path)
            _extract_zip(zip_path, extracted)
        except NETWORK_ERRORS as e:
            raise InputDataError(
                f"data.corpus: could not download {url} ({e.__class__.__name__}: {e}); "
                "check the URL and network, or point data.corpus at a local copy."
            ) from e
        except zipfile.BadZipFile as e:
            os.remove(zip_path)
            raise InputDataError(
                f"data.corpus: {url} is not a valid, safe zip ({e}); check the URL (the download was removed)."
            ) from e
    found = _find_subdir(extracted, subdir)
    if found is None:
        raise InputDataError(
            f"data.corpus: {url} has no folder {subdir!r} (extracted to {extracted}); "
            "set data.zip_subdir to the folder that holds the split files."
        )
    return found


def _check_sha256(url: str, zip_path: str, extracted: str, expected: str) -> None:
    """Downloads the zip if it is not cached, then compares its sha256 with `expected`."""
    try:
        if not os.path.exists(zip_path):
            _download(url, zip_path)
    except NETWORK_ERRORS as e:
        raise InputDataError(f"data.corpus: could not download {url} ({e.__class__.__name__}: {e}).") from e
    actual = files_sha256([zip_path])
    if actual != expected:
        os.remove(zip_path)
        shutil.rmtree(extracted, ignore_errors=True)
        raise InputDataError(
            f"data.sha256: {url} has sha256 {actual}, not {expected}; the download was removed. "
            "Check the URL, or update data.sha256 if the file changed on purpose."
        )


def _download(url: str, path: str) -> None:
    """Streams `url` into `path` through a temporary file in the same folder."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix=".part", delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, tmp)
        except BaseException:
            os.remove(tmp.name)
            raise
    os.replace(tmp.name, path)


def _extract_zip(zip_path: str, target: str) -> None:
    """Extracts into a temporary folder, then renames it to `target`.

    Members that would land outside the folder (absolute paths, `..`) are refused.
    """
    with zipfile.ZipFile(zip_path) as zf:
        staging = tempfile.mkdtemp(dir=os.path.dirname(target), suffix=".part")
        try:
            root = os.path.realpath(staging)
            for member in zf.namelist():
                dest = os.path.realpath(os.path.join(root, member))
                if os.path.commonpath([root, dest]) != root:
                    raise zipfile.BadZipFile(f"member {member!r} would be written outside the extraction folder")
            zf.extractall(staging)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


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


def resolve_corpus_dir(corpus: str, zip_subdir: str, cache_dir: str, sha256: Optional[str] = None) -> str:
    """The directory holding the split files for config value `data.corpus` (a zip is
    checked against `sha256` where given)."""
    if corpus == EMBEDDED:
        return EMBEDDED_CORPUS_DIR
    if is_download(corpus):
        return download_and_extract(corpus, zip_subdir, cache_dir, sha256)
    if urlparse(corpus).scheme:  # gs://, s3://, ...: read by Beam/TF filesystems
        return corpus
    path = os.path.abspath(os.path.expanduser(corpus))
    if not os.path.isdir(path):
        raise InputDataError(
            f"data.corpus: {path} is not a directory; point it at a folder holding the split "
            "files, or use 'embedded' or a zip URL."
        )
    return path


def file_size(path: str) -> int:
    """Bytes in a local or gs:// file."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// support)

    return tf.io.gfile.stat(path).length


@contextlib.contextmanager
def _readable(path: str, key: str) -> Iterator[None]:
    """A bucket that cannot be read (credentials, network, name) as one line naming `key`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// support)

    try:
        yield
    except tf.errors.OpError as e:
        raise InputDataError(
            f"{key}: cannot read {path} ({first_line(e)}); check the bucket name, the network and your "
            "credentials (gcloud auth application-default login)."
        ) from None


def _glob(pattern: str, key: str) -> List[str]:
    """The files matching `pattern`, sorted."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// support)

    with _readable(pattern, key):
        return sorted(tf.io.gfile.glob(pattern))


def check_split_file(corpus_dir: str, file_name: str, key: str) -> str:
    """Fails early, naming the file, if a split file is missing or empty."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// support)

    path = os.path.join(corpus_dir, file_name)
    with _readable(path, key):
        exists = tf.io.gfile.exists(path)
    if not exists:
        if os.path.islink(path):  # exists() follows links: a dangling or looping one
            raise InputDataError(f"{key}: split file {path} is a symbolic link that leads nowhere (or in a loop).")
        raise InputDataError(f"{key}: split file {path} does not exist; check data.corpus and {key}.")
    if tf.io.gfile.isdir(path):
        raise InputDataError(f"{key}: {path} is a directory; {key} must name a text file in data.corpus.")
    if tf.io.gfile.stat(path).length == 0:
        raise InputDataError(f"{key}: split file {path} is empty; it needs one paragraph per line.")
    with tf.io.gfile.GFile(path, "rb") as f:
        magic = f.read(len(GZIP_MAGIC))
    if magic == GZIP_MAGIC and not path.endswith(".gz"):
        raise InputDataError(
            f"{key}: split file {path} is gzip-compressed; decompress it (gunzip), or name it with a .gz "
            "suffix (and set the key to that name) so the reader decompresses it."
        )
    return path


def split_files(corpus_dir: str, pattern: str, key: str) -> List[str]:
    """The files of a split: `pattern` is a file name, or a glob (`train-*.txt`) for a
    split sharded over several files. Each is checked as `check_split_file` does; a glob
    that matches nothing fails, naming it."""
    if not glob.has_magic(pattern):
        return [check_split_file(corpus_dir, pattern, key)]
    matches = _glob(os.path.join(corpus_dir, pattern), key)
    if not matches:
        raise InputDataError(
            f"{key}: {os.path.join(corpus_dir, pattern)} matches no file; check data.corpus and {key}."
        )
    return _checked(corpus_dir, matches, key)


def _checked(corpus_dir: str, paths: List[str], key: str) -> List[str]:
    return [check_split_file(corpus_dir, os.path.relpath(path, corpus_dir), key) for path in paths]


SPLIT_KEYS = {"train": "data.train_file", "eval": "data.eval_file", "test": "data.test_file"}


def latest_span(corpus_dir: str, patterns: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
    """`patterns` with TFX's span placeholders (`{SPAN}`, `{VERSION}`, or `{YYYY}{MM}{DD}`)
    filled in for the newest span that the train and eval splits both have, found by the
    function ExampleGen's driver calls (so these checks look at the files the run reads);
    patterns without them unchanged. The test split takes that span's file, if it has one."""
    from tfx.components.example_gen import utils  # pylint: disable=import-outside-toplevel
    from tfx.proto import example_gen_pb2  # pylint: disable=import-outside-toplevel

    required = [example_gen_pb2.Input.Split(name=split, pattern=patterns[split]) for split in ("train", "eval")]
    specs = utils.verify_split_pattern_specs(required[0])
    if not any(specs[:2]):
        return patterns
    try:  # fills the span (and version) into `required`'s patterns
        _, span, version = utils.calculate_splits_fingerprint_span_and_version(corpus_dir, required)
    except (ValueError, RuntimeError) as e:
        raise InputDataError(f"data.train_file / data.eval_file: {first_line(e)} (in {corpus_dir})") from None
    resolved = {split.name: split.pattern for split in required}
    test = patterns.get("test")
    if test:
        test_split = example_gen_pb2.Input.Split(name="test", pattern=test)
        resolved["test"] = utils.get_pattern_for_span_version(
            test, *utils.verify_split_pattern_specs(test_split), span, version
        )
    return resolved


def corpus_splits(corpus_dir: str, patterns: Dict[str, Optional[str]]) -> Dict[str, List[str]]:
    """Each split's files (`patterns`: split name -> file name or glob, with TFX's span
    placeholders resolved to the newest span: `latest_span`; the test split is optional
    and may come back empty), checked; a file in two splits fails, naming both keys: a
    test split that was trained on would not be held out."""
    patterns = latest_span(corpus_dir, patterns)
    found = {
        split: (optional_split_files if split == "test" else split_files)(corpus_dir, pattern, SPLIT_KEYS[split])
        for split, pattern in patterns.items()
    }
    owner: Dict[str, str] = {}
    for split, paths in found.items():
        for path in paths:
            if path in owner:
                raise InputDataError(
                    f"{SPLIT_KEYS[split]}: {path} is also in {SPLIT_KEYS[owner[path]]}; "
                    "each split needs files of its own."
                )
            owner[path] = split
    return found


def optional_split_files(corpus_dir: str, pattern: Optional[str], key: str) -> List[str]:
    """`split_files` of an optional split (the test split); none when `pattern` is not set
    or matches no file (globbed once: each match is then checked as a split file)."""
    return _checked(corpus_dir, _glob(os.path.join(corpus_dir, pattern), key), key) if pattern else []
