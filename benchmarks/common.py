"""What the benchmarks share: the reference's sizes and its data, read the reference's way.

No Keras import here: `train_step.py` picks the Keras backend before Keras is imported.
"""

from __future__ import annotations

import os
from typing import List

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
