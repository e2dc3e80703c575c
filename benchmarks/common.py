"""What the benchmarks share: the reference's sizes and its data, read the reference's way.

No Keras import here: the scripts pick the Keras backend before Keras is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, NamedTuple, Optional

import numpy as np

from components.data.formats import BOS_TOKEN, RESERVED_TOKENS
from components.minigpt.training import TrainingSettings, resolve_settings
from pipeline.config import TrainConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_CORPUS = os.path.join(REPO_ROOT, "pipeline", "embedded_corpus")
CACHE_DIR = os.path.join(REPO_ROOT, "outputs", "benchmarks")
# The reference's batch, window, vocabulary and line filter.
SEQ_LEN, BATCH, VOCAB_SIZE, MIN_CHARS = 128, 64, 5000, 450
RESERVED = list(RESERVED_TOKENS)
# The backends a benchmark's `--backend` takes (the GPU machine has JAX only).
KERAS_BACKENDS = ("tensorflow", "jax")
BOS_ID = RESERVED.index(BOS_TOKEN)


def corpus_lines(corpus_dir: str, split_file: str = "train.txt") -> List[bytes]:
    """The split's lines longer than 450 bytes, in file order (the reference's filter)."""
    with open(os.path.join(corpus_dir, split_file), "rb") as f:
        return [line.rstrip(b"\n") for line in f if len(line.rstrip(b"\n")) > MIN_CHARS]


def vocabulary(lines: List[bytes], corpus_dir: str) -> List[str]:
    """The reference's 5000-token WordPiece vocabulary for `lines` (learned once, cached)."""
    name = f"vocab-{os.path.basename(os.path.normpath(corpus_dir))}-{len(lines)}.txt"
    path = os.path.join(CACHE_DIR, name)
    if not os.path.exists(path):
        from components.vocab_gen.wordpiece import learn_vocabulary, pretokenize_lines

        counts: dict = {}
        for word in pretokenize_lines(lines, lowercase=True):
            counts[word] = counts.get(word, 0) + 1
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(learn_vocabulary(counts.items(), VOCAB_SIZE, RESERVED)) + "\n")
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def token_labels(codec, lines: List[bytes]) -> np.ndarray:
    """(N, 128) int32 labels of `lines`, as the Tokenize step writes them (the reference's ids)."""
    chunks = [lines[i : i + 512] for i in range(0, len(lines), 512)]
    return np.concatenate([np.asarray(codec.features_and_labels(chunk)[1]) for chunk in chunks]).astype("int32")


def our_settings() -> TrainingSettings:
    """The Trainer's step settings as configured by default, resolved for this machine."""
    train = TrainConfig()
    return resolve_settings(train.precision, train.jit_compile, train.steps_per_execution)


class TokenIds(NamedTuple):
    """A corpus's ids as `save_tokens` wrote them: what a machine without TensorFlow trains on."""

    train: np.ndarray  # (N, 128) int32 labels, [PAD] = 0
    valid: Optional[np.ndarray]  # the same of valid.txt, if the corpus had one
    vocabulary_size: int


def _beside(path: str, suffix: str) -> str:
    """`ids.npy` -> `ids.<suffix>`: the files `save_tokens` writes next to the train ids."""
    return os.path.splitext(path)[0] + "." + suffix


def save_tokens(path: str, corpus_dir: str) -> None:
    """Writes the corpus's train ids to `path` (.npy), its valid ids and vocabulary beside it.

    Tokenizing needs TensorFlow (keras_hub's WordPiece); a GPU machine without it reads
    these files (`load_tokens`). uint16 halves the files (a 5000-token vocabulary fits).
    """
    from components.minigpt.tokenizer import TextCodec

    lines = corpus_lines(corpus_dir)
    vocab = vocabulary(lines, corpus_dir)
    codec = TextCodec(vocab, SEQ_LEN)
    assert len(vocab) <= np.iinfo("uint16").max + 1, len(vocab)
    np.save(path, token_labels(codec, lines).astype("uint16"))
    if os.path.exists(os.path.join(corpus_dir, "valid.txt")):
        np.save(_beside(path, "valid.npy"), token_labels(codec, corpus_lines(corpus_dir, "valid.txt")).astype("uint16"))
    with open(_beside(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    print(f"wrote {corpus_dir}'s token ids ({len(lines)} train lines, vocabulary {len(vocab)}) to {path}")


def load_tokens(path: str) -> TokenIds:
    """The ids `save_tokens` wrote. Without a vocabulary file beside them (ids saved before
    there was one) the vocabulary size is the largest id + 1."""
    train = np.load(path).astype("int32")
    valid_path, vocab_path = _beside(path, "valid.npy"), _beside(path, "vocab.txt")
    valid = np.load(valid_path).astype("int32") if os.path.exists(valid_path) else None
    if os.path.exists(vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            vocabulary_size = len(f.read().splitlines())
    else:
        vocabulary_size = int(train.max()) + 1
    return TokenIds(train, valid, vocabulary_size)


def backend_from_argv(argv: Optional[List[str]] = None) -> Optional[str]:
    """Sets KERAS_BACKEND from `--backend` in the command line, if given; returns it.

    Keras reads the backend once, at its import, so a script imported as a module (by the
    tests) must not parse its whole command line then: this reads `--backend` alone.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--backend", choices=KERAS_BACKENDS)
    backend = parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].backend
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    return backend
