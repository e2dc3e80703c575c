"""The vectorised WordPiece learner against tensorflow_text's, on the inputs that steer it.

tensorflow_text's `learn` is the specification: every case here runs both on the same
word counts and requires the same vocabulary, token for token.
"""

import random

import numpy as np
import pytest
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as reference

from components.vocab_gen import learner

RESERVED = ["[PAD]", "[UNK]", "[BOS]"]


def reference_learn(word_counts, size, reserved=RESERVED, **kwargs):
    return reference.learn(word_counts, size, list(reserved), include_joiner_token=True, joiner="##", **kwargs)


def random_counts(seed, n_words, alphabet="abcdefgh", max_len=9):
    """Zipf-like counts over random words: shared prefixes and suffixes, many ties."""
    rng = random.Random(seed)
    words = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len))) for _ in range(n_words)}
    return [(w, max(1, int(2000 / (rank + 1)) + rng.randint(0, 3))) for rank, w in enumerate(sorted(words))]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [40, 200, 1000])
def test_identical_on_random_word_counts(seed, size):
    counts = random_counts(seed, 600)
    assert learner.learn(counts, size, RESERVED) == reference_learn(counts, size)


def test_identical_with_filtered_words():
    """Words over 50 characters, reserved tokens as words, single characters, counts
    below the search's lower bound and one huge count (the search's upper bound)."""
    counts = random_counts(7, 300) + [
        ("x" * 51, 500),  # too long: dropped
        ("y" * 50, 40),  # at the limit: kept
        ("[UNK]", 900),  # a reserved token: dropped
        ("q", 3),
        ("the", 5_000_000),
    ]
    assert learner.learn(counts, 150, RESERVED) == reference_learn(counts, 150)


def test_identical_when_the_alphabet_is_cut():
    """More than 1000 distinct characters: words with the rarest ones are dropped."""
    rare = [chr(0x4E00 + i) for i in range(1100)]  # CJK ideographs, one word each
    counts = random_counts(3, 200) + [(c + "ab", 1 + i % 7) for i, c in enumerate(rare)]
    assert learner.learn(counts, 1500, RESERVED) == reference_learn(counts, 1500)


def test_identical_at_the_input_cut_with_canonical_tie_order(monkeypatch):
    """Above the 5 M-word cut tensorflow_text keeps the words it saw first among ties;
    in count-then-alphabetical order (what VocabGen's Beam job keeps) both agree."""
    monkeypatch.setattr(learner, "MAX_INPUT_TOKENS", 120)
    counts = sorted(random_counts(5, 400), key=lambda wc: (-wc[1], wc[0]))
    assert learner.learn(counts, 100, RESERVED) == reference_learn(counts, 100, max_input_tokens=120)


def test_result_ignores_input_order():
    counts = random_counts(11, 400)
    shuffled = counts[:]
    random.Random(0).shuffle(shuffled)
    assert learner.learn(shuffled, 300, RESERVED) == learner.learn(counts, 300, RESERVED)


def test_bounds_from_the_full_word_set_keep_a_pruned_search_identical():
    """VocabGen drops the words the learner would drop before the learner sees them;
    the threshold search's bounds must still come from every word, as tensorflow_text
    takes them before its filters."""
    kept = [(w, c + 20) for w, c in random_counts(2, 500)]
    dropped = [("z" * 60, 1), ("[BOS]", 10**6)]  # too long / reserved: filtered out
    everything = kept + dropped
    bounds = learner.search_bounds(c for _, c in everything)
    assert bounds == (10, 10**6) != learner.search_bounds(c for _, c in kept)
    assert learner.learn(kept, 200, RESERVED, bounds=bounds) == reference_learn(everything, 200)


def test_trie_spells_every_substring_once():
    trie = learner.build_trie(["abab", "ba"], [3, 2])
    spelled = [trie.spell(node) for node in range(2, trie.num_nodes)]
    assert sorted(spelled) == sorted(set(spelled))
    assert set(spelled) == {
        "a", "ab", "aba", "abab", "##b", "##ba", "##bab", "##a", "##ab", "b", "ba",
    }  # fmt: skip
    counts = learner.count_substrings(trie, None)
    by_token = dict(zip(spelled, counts[2:].tolist()))
    assert by_token["##b"] == 3 * 2 and by_token["ba"] == 2 and by_token["##a"] == 3 + 2


def test_memory_grows_with_substrings_not_words_squared():
    counts = random_counts(1, 2000, max_len=12)
    trie = learner.build_trie([w for w, _ in counts], [c for _, c in counts])
    pairs = sum(len(p) for p in trie.level_positions)
    lengths = np.array([len(w) for w, _ in counts])
    assert pairs == int((lengths * (lengths + 1) // 2).sum())
    assert trie.num_nodes <= pairs + 2


def test_identical_with_an_empty_word():
    """keras_nlp counts an empty word for a word of default-ignorable characters only
    (U+3164 alone): it has nothing to learn from, but it counts for the search bounds."""
    counts = random_counts(4, 200) + [("", 7)]
    assert learner.learn(counts, 100, RESERVED) == reference_learn(counts, 100)
