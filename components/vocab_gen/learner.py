"""tensorflow_text's WordPiece learner, vectorised: the same vocabulary, many times faster.

keras_nlp's `compute_word_piece_vocabulary` ends in tensorflow_text's
`wordpiece_tokenizer_learner_lib.learn`: a binary search over a count threshold, where
every probe runs 4 iterations that count every candidate substring of every word in
Python dicts (~158 s on gutenberg-large's 77,594 words). This module computes exactly
the same thing with NumPy:

- Every substring the learner can ever count is a node of one trie of word suffixes,
  built once, level by level (a node is a parent node plus one character; a suffix that
  starts inside a word hangs under the `##` root). Node ids are exact: no hashing.
- Counting the substrings of an iteration is one `np.bincount` over all (position,
  length) pairs, every level at once; the learner's "subtract each kept token's count from its prefixes" pass is a
  bottom-up sum over the trie; greedy longest-match segmentation is a vectorised walk.
- Iteration 0 counts every substring whatever the threshold, so it runs once and all
  probes of the binary search share it.

The result depends only on the word counts (ties broken by count, then alphabetically),
as in tensorflow_text, so `learn` returns its vocabulary token for token; the tests and
`benchmarks/vocab.py` check that against keras_nlp. Time and memory grow linearly with
the number of (word, start, end) substrings, i.e. with the distinct words. No TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np


def _tensorflow_text_learner_lib() -> ModuleType:
    """tensorflow_text's pure-Python learner module (NumPy only), loaded from its file.

    Importing it by name runs `tensorflow_text/__init__`, which imports TensorFlow: 5-15 s
    on every Beam worker process that unpickles a function of this module.
    """
    package = importlib.util.find_spec("tensorflow_text")  # finds it without importing it
    if package is None or not package.submodule_search_locations:
        raise ImportError("VocabGen's learner needs the tensorflow-text package (its WordPiece learner).")
    folder = os.path.join(package.submodule_search_locations[0], "tools", "wordpiece_vocab")
    spec = importlib.util.spec_from_file_location(
        "tensorflow_text_wordpiece_learner_lib", os.path.join(folder, "wordpiece_tokenizer_learner_lib.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tensorflow_text's helpers for the cheap parts: word filters, the alphabet and the final
# ordering.
reference = _tensorflow_text_learner_lib()

JOINER = "##"
# tensorflow_text's defaults, which keras_nlp uses.
UPPER_THRESH = int(1e7)
LOWER_THRESH = 10
NUM_ITERATIONS = 4
MAX_INPUT_TOKENS = int(5e6)
MAX_TOKEN_LENGTH = 50
MAX_UNIQUE_CHARS = 1000
SLACK_RATIO = 0.05

WORD_START_ROOT, INSIDE_ROOT = 0, 1  # the two trie roots: "" and "##"


@dataclasses.dataclass
class SubstringTrie:
    """Every substring of every word, as trie nodes, with where each one occurs.

    Positions index the words' characters laid end to end. Level k (a substring of k
    characters) holds, for every position p with at least k characters left in its word,
    the node of word[p : p + k]: `level_positions[k - 1]` and `level_nodes[k - 1]`.
    """

    level_positions: List[np.ndarray]  # views into entry_positions
    level_nodes: List[np.ndarray]  # views into entry_nodes
    level_bounds: List[Tuple[int, int]]  # node ids of level k: [lo, hi)
    parent: np.ndarray  # node -> the node one character shorter (a root at level 1)
    first_position: np.ndarray  # node -> a position where it occurs, to spell it out
    level: np.ndarray  # node -> its length in characters
    inside: np.ndarray  # node -> True if it starts inside a word (spelled with "##")
    chars: np.ndarray  # the characters, as code points
    word_start: np.ndarray  # word -> its first position
    word_end: np.ndarray  # word -> one past its last position
    entry_positions: np.ndarray  # every level's positions, laid end to end
    entry_nodes: np.ndarray  # the node of each entry
    entry_weight: np.ndarray  # the count of the word each entry lies in (float64, for bincount)
    text: str  # the words laid end to end

    @property
    def num_nodes(self) -> int:
        return len(self.parent)

    def spell(self, node: int) -> str:
        """The token a node stands for, with the joiner when it starts inside a word."""
        p, k = int(self.first_position[node]), int(self.level[node])
        return (JOINER if self.inside[node] else "") + self.text[p : p + k]


def build_trie(words: Sequence[str], counts: Sequence[int]) -> SubstringTrie:
    """The trie of all substrings of `words`, one level (substring length) at a time."""
    text = "".join(words)
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    word_end = np.cumsum(lengths)
    word_start = word_end - lengths
    word_of_position = np.repeat(np.arange(len(words)), lengths)
    position_weight = np.asarray(counts, dtype=np.int64)[word_of_position]
    left = word_end[word_of_position] - np.arange(len(chars))  # characters left in the word
    alphabet = int(chars.max()) + 1 if len(chars) else 1

    positions = np.arange(len(chars))
    nodes = np.where(left == lengths[word_of_position], WORD_START_ROOT, INSIDE_ROOT)
    # The two roots first: node ids 0 and 1.
    parents, firsts, levels = [np.array([-1, -1])], [np.array([0, 0])], [np.array([0, 0])]
    level_positions, level_nodes, level_bounds = [], [], []
    next_id, k = 2, 1
    while len(positions):
        keys = nodes * alphabet + chars[positions + k - 1]
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        nodes = next_id + inverse
        level_positions.append(positions)
        level_nodes.append(nodes)
        level_bounds.append((next_id, next_id + len(unique)))
        parents.append(unique // alphabet)
        firsts.append(positions[first])
        levels.append(np.full(len(unique), k))
        next_id += len(unique)
        longer = left[positions] > k
        positions, nodes, k = positions[longer], nodes[longer], k + 1
    parent, level = np.concatenate(parents), np.concatenate(levels)
    entry_positions, entry_nodes = np.concatenate(level_positions), np.concatenate(level_nodes)
    ends = np.cumsum([len(p) for p in level_positions])
    level_positions = [entry_positions[end - len(p) : end] for p, end in zip(level_positions, ends)]
    level_nodes = [entry_nodes[end - len(n) : end] for n, end in zip(level_nodes, ends)]
    inside = np.zeros(len(parent), dtype=bool)
    inside[INSIDE_ROOT] = True
    for lo, hi in level_bounds:  # a node starts where its parent starts
        inside[lo:hi] = inside[parent[lo:hi]]
    return SubstringTrie(
        level_positions=level_positions,
        level_nodes=level_nodes,
        level_bounds=level_bounds,
        parent=parent,
        first_position=np.concatenate(firsts),
        level=level,
        inside=inside,
        chars=chars,
        word_start=word_start,
        word_end=word_end,
        entry_positions=entry_positions,
        entry_nodes=entry_nodes,
        entry_weight=position_weight[entry_positions].astype(np.float64),
        text=text,
    )


def count_substrings(trie: SubstringTrie, starts: Optional[np.ndarray]) -> np.ndarray:
    """Per node: the summed counts of the words it occurs in, from the allowed starts.

    `starts` is a boolean mask over positions (None: every position, iteration 0): the
    learner counts word[s:e] for every allowed start s and every end e in the word.
    """
    weights = trie.entry_weight if starts is None else trie.entry_weight * starts[trie.entry_positions]
    return _sum_by(trie.entry_nodes, weights, trie.num_nodes)


def _sum_by(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """int64 sums of `values` grouped by `index` in [0, size): a bincount, exact below 2**53."""
    return np.rint(np.bincount(index, values.astype(np.float64, copy=False), minlength=size)).astype(np.int64)


def subtract_longer_tokens(trie: SubstringTrie, counts: np.ndarray) -> np.ndarray:
    """The learner's second pass: from the longest substrings down, each substring's
    (already reduced) count is subtracted from every shorter prefix of it.

    So a node ends with its count minus the reduced counts of all its descendants; the
    sum over descendants is carried one level up at a time.
    """
    reduced = counts.copy()
    below = np.zeros(trie.num_nodes, dtype=np.int64)  # reduced counts of all descendants
    bounds = [(0, 2)] + trie.level_bounds  # the roots, then each level
    for (parent_lo, parent_hi), (lo, hi) in reversed(list(zip(bounds, bounds[1:]))):
        reduced[lo:hi] -= below[lo:hi]
        parents = trie.parent[lo:hi] - parent_lo
        below[parent_lo:parent_hi] += _sum_by(parents, reduced[lo:hi] + below[lo:hi], parent_hi - parent_lo)
    return reduced


def segment_starts(trie: SubstringTrie, in_vocab: np.ndarray) -> np.ndarray:
    """Where the learner's greedy longest-match segmentation starts a piece, per position.

    Words that cannot be segmented with `in_vocab` are skipped by the learner: none of
    their positions is a start.
    """
    longest = np.zeros(len(trie.chars), dtype=np.int64)
    for k, (positions, nodes) in enumerate(zip(trie.level_positions, trie.level_nodes), start=1):
        longest[positions[in_vocab[nodes]]] = k  # levels ascend, so the longest match wins
    starts = np.zeros(len(trie.chars), dtype=bool)
    failed = np.zeros(len(trie.word_start), dtype=bool)
    words = np.arange(len(trie.word_start))
    at = trie.word_start.copy()
    while len(words):
        starts[at] = True
        step = longest[at]
        failed[words[step == 0]] = True
        at = at + step
        going = (step > 0) & (at < trie.word_end[words])
        words, at = words[going], at[going]
    if failed.any():
        word_of_position = np.repeat(np.arange(len(trie.word_start)), trie.word_end - trie.word_start)
        starts &= ~failed[word_of_position]
    return starts


class _Learner:
    """One word list, learned at any threshold; iteration 0 is shared by all of them."""

    def __init__(self, words: List[str], counts: List[int], reserved_tokens: Sequence[str]):
        self.trie = build_trie(words, counts)
        self.reserved_tokens = list(reserved_tokens)
        self.char_tokens = set("".join(words))
        first_counts = count_substrings(self.trie, None)
        self.first_counted = first_counts > 0
        self.first_reduced = subtract_longer_tokens(self.trie, first_counts)
        self.is_char = self.trie.level == 1

    def vocabulary(self, thresh: int, num_iterations: int) -> List[str]:
        """`learn_with_thresh`: the vocabulary for one frequency threshold."""
        counted, reduced = self.first_counted, self.first_reduced
        for _ in range(1, num_iterations):
            in_vocab = (counted & (reduced >= thresh)) | self.is_char
            counts = count_substrings(self.trie, segment_starts(self.trie, in_vocab))
            counted, reduced = counts > 0, subtract_longer_tokens(self.trie, counts)
        kept = np.flatnonzero(counted & (reduced >= thresh))
        tokens: Dict[str, int] = {self.trie.spell(node): int(reduced[node]) for node in kept}
        tokens = reference.ensure_all_tokens_exist(self.char_tokens, tokens, True, JOINER)
        return reference.generate_final_vocabulary(self.reserved_tokens, self.char_tokens, tokens)


def search_bounds(counts: Iterable[int]) -> Tuple[int, int]:
    """The binary search's (lower, upper) threshold bounds from every word's count.

    tensorflow_text takes them over all words, before any filter; a caller that prunes
    words first (VocabGen's Beam job) passes the full set's min and max instead.
    """
    counts = list(counts)
    return max(min(counts), LOWER_THRESH), min(max(counts), UPPER_THRESH)


def alphabet(char_counts: Dict[str, int]) -> set:
    """The 1000 most frequent characters (ties alphabetical): tensorflow_text's
    `get_allowed_chars`, from character counts that may have been summed elsewhere."""
    ranked = sorted(sorted(char_counts.items(), key=lambda x: x[0]), key=lambda x: x[1], reverse=True)
    return {char for char, _ in ranked[:MAX_UNIQUE_CHARS]}


def learner_input(word_counts: Iterable[Tuple[str, int]], reserved_tokens: Sequence[str]) -> List[Tuple[str, int]]:
    """The words the learner learns from: not too long, not reserved, only the most
    frequent 1000 characters, the most frequent 5 M words (tensorflow_text's filters)."""
    kept = reference.get_input_words(word_counts, list(reserved_tokens), MAX_TOKEN_LENGTH)
    char_counts: Dict[str, int] = collections.Counter()
    for word, count in kept:
        for char in word:
            char_counts[char] += count
    return reference.filter_input_words(kept, alphabet(char_counts), MAX_INPUT_TOKENS)


def learn(
    word_counts: Sequence[Tuple[str, int]],
    vocab_size: int,
    reserved_tokens: Sequence[str],
    bounds: Optional[Tuple[int, int]] = None,
) -> List[str]:
    """tensorflow_text's `learn(word_counts, vocab_size, reserved_tokens)` with its defaults
    (joiner "##"), same result.

    Args:
      word_counts: (word, count) pairs, words distinct.
      vocab_size: the largest vocabulary wanted; the search stops within 5% below it.
      reserved_tokens: tokens placed first.
      bounds: (lower, upper) of the threshold search (`search_bounds` of every word's
        count); default: from `word_counts` itself.
    """
    word_counts = list(word_counts)
    lower, upper = bounds if bounds is not None else search_bounds(c for _, c in word_counts)
    # An empty word (keras_nlp's for a word of default-ignorable characters) has no
    # substring to count; it still took its place in the input cut.
    filtered = [(word, count) for word, count in learner_input(word_counts, reserved_tokens) if word]
    learner = _Learner([w for w, _ in filtered], [c for _, c in filtered], reserved_tokens)
    slack = max(SLACK_RATIO * vocab_size, 0)
    while True:  # learn_binary_search, as a loop
        thresh = (upper + lower) // 2
        vocab = learner.vocabulary(thresh, NUM_ITERATIONS)
        within_slack = len(vocab) <= vocab_size and vocab_size - len(vocab) <= slack
        if within_slack or lower >= upper or thresh <= 1:
            return vocab
        if len(vocab) > vocab_size:
            lower = thresh + 1
        else:
            upper = thresh - 1
