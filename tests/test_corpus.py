"""The corpus sources: the embedded copy, local directories, and the zip download."""

import gzip
import hashlib
import http.server
import os
import threading
import zipfile

import pytest

from components.runtime.errors import ConfigError, InputDataError
from pipeline import corpus
from pipeline.config import load_config
from pipeline.corpus import (
    EMBEDDED_CORPUS_DIR,
    check_split_file,
    corpus_splits,
    optional_split_files,
    resolve_corpus_dir,
    split_files,
)

# gutenberg-small as shipped in ../shared/data: results stay comparable between runs only
# while these bytes stay the same.
EMBEDDED_SHA256 = {
    "train.txt": "3a6aad6e7ecabf83d49718c73af62bca5d1e52b6437abb023a369fd1bcd0c5ee",
    "valid.txt": "2f4d20baa0d4904caa9e6ebd5125197a14050d97c0390f1cb100e667a3994c5b",
    "test.txt": "2731135784a63f1b1fbcc927da9ccadfd6ef2e590e239599243a07a32c3fff7e",
}


@pytest.mark.parametrize("name", sorted(EMBEDDED_SHA256))
def test_embedded_corpus_is_unchanged(name):
    with open(os.path.join(EMBEDDED_CORPUS_DIR, name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == EMBEDDED_SHA256[name]


def test_embedded_and_local_paths_resolve(tiny_corpus):
    assert resolve_corpus_dir("embedded", "x", "/unused") == EMBEDDED_CORPUS_DIR
    assert resolve_corpus_dir(str(tiny_corpus), "x", "/unused") == str(tiny_corpus)
    assert resolve_corpus_dir("gs://bucket/simplebooks", "x", "/unused") == "gs://bucket/simplebooks"


def _simplebooks_zip(tmp_path, tiny_corpus):
    """A zip laid out like the reference's simplebooks.zip (simplebooks/simplebooks-92-raw/...)."""
    path = tmp_path / "serve" / "simplebooks.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("train.txt", "valid.txt"):
            zf.write(tiny_corpus / name, f"simplebooks/simplebooks-92-raw/{name}")
    return path


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _CountingHandler.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path, tiny_corpus):
    zip_path = _simplebooks_zip(tmp_path, tiny_corpus)
    _CountingHandler.hits = []
    handler = lambda *a, **kw: _CountingHandler(*a, directory=str(zip_path.parent), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_extracts_once_and_reuses_the_cache(http_server, tmp_path, tiny_corpus):
    cache = tmp_path / "cache"
    url = http_server + "/simplebooks.zip"
    corpus_dir = resolve_corpus_dir(url, "simplebooks-92-raw", str(cache))
    assert os.path.basename(corpus_dir) == "simplebooks-92-raw"
    assert str(cache) in corpus_dir
    with open(os.path.join(corpus_dir, "train.txt"), "rb") as got, open(tiny_corpus / "train.txt", "rb") as want:
        assert got.read() == want.read()
    assert resolve_corpus_dir(url, "simplebooks-92-raw", str(cache)) == corpus_dir
    assert _CountingHandler.hits == ["/simplebooks.zip"]


def test_file_url_works_like_http(tmp_path, tiny_corpus):
    zip_path = _simplebooks_zip(tmp_path, tiny_corpus)
    corpus_dir = resolve_corpus_dir(zip_path.as_uri(), "simplebooks-92-raw", str(tmp_path / "cache"))
    check_split_file(corpus_dir, "valid.txt", "data.eval_file")


def test_download_errors_are_one_clear_line(http_server, tmp_path):
    with pytest.raises(InputDataError, match="could not download"):
        resolve_corpus_dir(http_server + "/missing.zip", "simplebooks-92-raw", str(tmp_path / "c1"))
    with pytest.raises(InputDataError, match="data.zip_subdir"):
        resolve_corpus_dir(http_server + "/simplebooks.zip", "no-such-folder", str(tmp_path / "c2"))


def test_a_file_that_is_not_a_zip_is_one_clear_line_and_removed(http_server, tmp_path):
    (tmp_path / "serve" / "page.zip").write_text("<html>not found</html>")
    cache = tmp_path / "cache"
    with pytest.raises(InputDataError, match="page.zip is not a valid, safe zip"):
        resolve_corpus_dir(http_server + "/page.zip", "simplebooks-92-raw", str(cache))
    assert os.listdir(cache / "datasets") == []


def test_a_zip_with_members_outside_its_folder_is_refused(http_server, tmp_path):
    with zipfile.ZipFile(tmp_path / "serve" / "evil.zip", "w") as zf:
        zf.writestr("books/train.txt", "fine\n")
        zf.writestr("../../escaped.txt", "gotcha\n")
    cache = tmp_path / "cache"
    with pytest.raises(InputDataError, match=r"member '../../escaped.txt' would be written outside"):
        resolve_corpus_dir(http_server + "/evil.zip", "books", str(cache))
    assert not (tmp_path / "escaped.txt").exists() and not (cache / "escaped.txt").exists()
    assert os.listdir(cache / "datasets") == []


def test_an_interrupted_download_leaves_nothing_a_rerun_would_trust(http_server, tmp_path, monkeypatch):
    def drop_connection(*args, **kwargs):
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(corpus.shutil, "copyfileobj", drop_connection)
    cache = tmp_path / "cache"
    with pytest.raises(InputDataError, match="could not download .*ConnectionResetError"):
        resolve_corpus_dir(http_server + "/simplebooks.zip", "simplebooks-92-raw", str(cache))
    assert os.listdir(cache / "datasets") == []
    monkeypatch.undo()
    assert os.path.isdir(resolve_corpus_dir(http_server + "/simplebooks.zip", "simplebooks-92-raw", str(cache)))


def test_errors_that_are_not_network_or_archive_errors_keep_their_cause(http_server, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug, not the user's network")

    monkeypatch.setattr(corpus, "_extract_zip", bug)
    with pytest.raises(KeyError, match="a bug"):
        resolve_corpus_dir(http_server + "/simplebooks.zip", "simplebooks-92-raw", str(tmp_path / "cache"))


def test_split_file_checks_name_the_file(tiny_corpus):
    with pytest.raises(InputDataError, match=r"data.train_file: split file .*nope.txt does not exist"):
        check_split_file(str(tiny_corpus), "nope.txt", "data.train_file")
    (tiny_corpus / "empty.txt").write_text("")
    with pytest.raises(InputDataError, match=r"empty.txt is empty"):
        check_split_file(str(tiny_corpus), "empty.txt", "data.eval_file")


def test_hostile_split_files_are_named_with_the_fix(tiny_corpus):
    (tiny_corpus / "folder.txt").mkdir()
    os.symlink("loop.txt", tiny_corpus / "loop.txt")
    os.symlink("gone.txt", tiny_corpus / "dangling.txt")
    with gzip.open(tiny_corpus / "packed.txt", "wb") as f:
        f.write((tiny_corpus / "train.txt").read_bytes())
    (tiny_corpus / "packed.txt.gz").write_bytes((tiny_corpus / "packed.txt").read_bytes())
    for name, problem in [
        ("folder.txt", "is a directory; data.train_file must name a text file"),
        ("loop.txt", "is a symbolic link that leads nowhere"),
        ("dangling.txt", "is a symbolic link that leads nowhere"),
        ("packed.txt", r"is gzip-compressed; decompress it \(gunzip\), or name it with a .gz suffix"),
    ]:
        with pytest.raises(InputDataError, match=rf"^data.train_file: .*{name} {problem}"):
            check_split_file(str(tiny_corpus), name, "data.train_file")
    assert check_split_file(str(tiny_corpus), "packed.txt.gz", "data.train_file").endswith("packed.txt.gz")


def test_a_bucket_that_cannot_be_read_is_one_line_naming_the_file():
    # TensorFlow 2.16 has no s3:// filesystem: a read error that needs no network to happen.
    with pytest.raises(InputDataError, match=r"^data.train_file: cannot read s3://bucket/books/train.txt \(.*s3"):
        check_split_file("s3://bucket/books", "train.txt", "data.train_file")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_pinned_sha256_accepts_the_zip_and_refuses_another(http_server, tmp_path):
    url, cache = http_server + "/simplebooks.zip", tmp_path / "cache"
    good = _sha256(tmp_path / "serve" / "simplebooks.zip")
    assert os.path.isdir(resolve_corpus_dir(url, "simplebooks-92-raw", str(cache), good))
    # The file behind the URL changed (or was tampered with): the cached copy is checked too.
    wrong = "0" * 64
    with pytest.raises(InputDataError, match=rf"data.sha256: .* has sha256 {good}, not {wrong}; the download was"):
        resolve_corpus_dir(url, "simplebooks-92-raw", str(cache), wrong)
    assert os.listdir(cache / "datasets") == []


@pytest.mark.parametrize("value", ["abc", "A" * 64, "g" * 64])
def test_a_malformed_sha256_is_a_config_error(value):
    with pytest.raises(ConfigError, match="data.sha256: must be 64 lowercase hex digits"):
        load_config(None, [f"data.sha256={value}"])


def test_absolute_members_and_truncated_zips_are_refused(http_server, tmp_path):
    with zipfile.ZipFile(tmp_path / "serve" / "absolute.zip", "w") as zf:
        zf.writestr("books/train.txt", "fine\n")
        zf.writestr("/tmp/owned.txt", "gotcha\n")
    full = (tmp_path / "serve" / "simplebooks.zip").read_bytes()
    (tmp_path / "serve" / "truncated.zip").write_bytes(full[: len(full) // 2])
    for name in ("absolute.zip", "truncated.zip"):
        cache = tmp_path / f"cache-{name}"
        with pytest.raises(InputDataError, match=f"{name} is not a valid, safe zip"):
            resolve_corpus_dir(f"{http_server}/{name}", "books", str(cache))
        assert os.listdir(cache / "datasets") == []


def test_a_split_may_be_sharded_over_files_named_by_a_glob(tiny_corpus):
    lines = (tiny_corpus / "train.txt").read_bytes().splitlines(keepends=True)
    for shard in range(2):
        (tiny_corpus / f"train-{shard}.txt").write_bytes(b"".join(lines[shard::2]))
    found = split_files(str(tiny_corpus), "train-*.txt", "data.train_file")
    assert found == [str(tiny_corpus / "train-0.txt"), str(tiny_corpus / "train-1.txt")]
    assert split_files(str(tiny_corpus), "train.txt", "data.train_file") == [str(tiny_corpus / "train.txt")]
    with pytest.raises(InputDataError, match=r"^data.train_file: .*nope-\*.txt matches no file"):
        split_files(str(tiny_corpus), "nope-*.txt", "data.train_file")
    (tiny_corpus / "train-2.txt").write_bytes(b"")
    with pytest.raises(InputDataError, match=r"train-2.txt is empty"):
        split_files(str(tiny_corpus), "train-*.txt", "data.train_file")
    # An optional split (the test split) that the corpus lacks is no split at all.
    assert optional_split_files(str(tiny_corpus), "test-*.txt", "data.test_file") == []
    assert optional_split_files(str(tiny_corpus), None, "data.test_file") == []


def test_a_file_in_two_splits_fails_naming_both_keys(tiny_corpus):
    """A glob that also matches the held-out file would train on it: refused."""
    with pytest.raises(InputDataError, match=r"^data.eval_file: .*valid.txt is also in data.train_file; each split"):
        corpus_splits(str(tiny_corpus), {"train": "*.txt", "eval": "valid.txt", "test": "test.txt"})
    with pytest.raises(InputDataError, match=r"^data.test_file: .*valid.txt is also in data.eval_file"):
        corpus_splits(str(tiny_corpus), {"train": "train.txt", "eval": "valid.txt", "test": "valid.txt"})
    found = corpus_splits(str(tiny_corpus), {"train": "train.txt", "eval": "valid.txt", "test": "none-*.txt"})
    assert found == {"train": [str(tiny_corpus / "train.txt")], "eval": [str(tiny_corpus / "valid.txt")], "test": []}


def test_span_placeholders_pick_the_newest_span_every_split_has(tiny_corpus, tmp_path):
    """TFX's `{SPAN}` patterns, resolved by ExampleGen's own driver function: the checks
    look at the files the run will read."""
    books = tmp_path / "books"
    for span, splits in ((1, ("train", "valid", "test")), (2, ("train", "valid")), (10, ("train",))):
        (books / f"span-{span}").mkdir(parents=True)
        for split in splits:
            (books / f"span-{span}" / f"{split}.txt").write_bytes((tiny_corpus / f"{split}.txt").read_bytes())
    patterns = {"train": "span-{SPAN}/train.txt", "eval": "span-{SPAN}/valid.txt", "test": "span-{SPAN}/test.txt"}
    # Span 10 has no eval split, which TFX refuses (every split must have the newest span).
    with pytest.raises(InputDataError, match=r"^data.train_file / data.eval_file: Latest span should be the same"):
        corpus_splits(str(books), patterns)
    (books / "span-10" / "train.txt").rename(books / "span-10" / "notes.txt")
    # Span 2 is the newest: it has no test file, so the run has no test split.
    found = corpus_splits(str(books), patterns)
    assert found == {
        "train": [str(books / "span-2" / "train.txt")],
        "eval": [str(books / "span-2" / "valid.txt")],
        "test": [],
    }
    (books / "span-2" / "test.txt").write_bytes((tiny_corpus / "test.txt").read_bytes())
    assert corpus_splits(str(books), patterns)["test"] == [str(books / "span-2" / "test.txt")]
    # Without placeholders nothing changes.
    assert corpus.latest_span(str(tiny_corpus), {"train": "train.txt", "eval": "valid.txt"}) == {
        "train": "train.txt",
        "eval": "valid.txt",
    }
