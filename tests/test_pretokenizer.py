"""VocabGen's pretokenizer against keras_nlp's, word for word.

keras_hub's `pretokenize` (TensorFlow: RE2 and ICU) is the specification: every line of
the corpora here, and every code point, must give the same words in the same order.
`tests/data/awkward_corpus.txt` gathers what a plain-English corpus lacks: CJK (BMP and
astral), accents composed and decomposed, case folding that changes length (ß, İ, ﬁ,
final sigma, Cherokee), fullwidth and mathematical letters, punctuation runs, digits in
several scripts, words over 50 characters, tabs, vertical tabs, C1 controls, NBSP and
other non-ASCII spaces, soft hyphens, zero-width characters, default ignorables inside
and alone (a word that folds to nothing), emoji with joiners. gutenberg-large is checked
by `benchmarks/vocab.py` (its `identical_word_counts`).
"""

import collections
import os
import random
import sys

import pytest
import tensorflow as tf
from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize as keras_pretokenize

from components.vocab_gen import pretokenizer
from pipeline.corpus import EMBEDDED_CORPUS_DIR
from tests.conftest import REPO_ROOT, TINY_CORPUS

AWKWARD_CORPUS = os.path.join(REPO_ROOT, "tests", "data", "awkward_corpus.txt")
SPLITS = ("train.txt", "valid.txt", "test.txt")
CORPORA = [AWKWARD_CORPUS] + [os.path.join(d, s) for d in (TINY_CORPUS, EMBEDDED_CORPUS_DIR) for s in SPLITS]


def keras_words(lines, lowercase=True):
    """keras_nlp's words of each line, as compute_word_piece_vocabulary calls pretokenize."""
    words = []
    for i in range(0, len(lines), 1024):
        batch = tf.constant([line.encode("utf-8") for line in lines[i : i + 1024]])
        ragged = keras_pretokenize(batch, lowercase=lowercase, strip_accents=False, split=True, split_on_cjk=True)
        words += [[w.decode("utf-8") for w in line_words] for line_words in ragged.to_list()]
    return words


def our_words(lines, lowercase=True):
    return [pretokenizer.pretokenize(line, lowercase) for line in lines]


def read_lines(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in f]


@pytest.mark.parametrize("path", CORPORA, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_every_line_of_the_corpora_splits_as_keras_nlp(path):
    lines = read_lines(path)
    assert our_words(lines) == keras_words(lines)


@pytest.mark.parametrize("path", [AWKWARD_CORPUS, os.path.join(TINY_CORPUS, "train.txt")])
def test_without_lowercase_too(path):
    lines = read_lines(path)
    assert our_words(lines, lowercase=False) == keras_words(lines, lowercase=False)


def test_every_code_point_between_letters():
    """Each code point as `a<c>b` and `A<c>B`, a few hundred to a line: which class it is
    in (dropped, kept on its own, part of a word) and how it folds, for all 1.1 M. NUL is
    left out: it ends the line (below)."""
    groups = [f"a{chr(cp)}b A{chr(cp)}B" for cp in range(1, sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF]
    lines = [" ".join(groups[i : i + 500]) for i in range(0, len(groups), 500)]
    assert our_words(lines) == keras_words(lines)


def test_a_line_ends_at_its_first_nul():
    lines = ["ab\0cd ef", "\0ab", "ab \0"]
    assert our_words(lines) == keras_words(lines) == [["ab"], [], ["ab"]]
    # What follows the NUL is not read, so it need not be UTF-8 (keras_nlp reads past it neither).
    assert pretokenizer.count_words([b"ok\0\xff\xfe garbage"], lowercase=True) == {"ok": 1}


# Characters whose order and neighbours change how a word folds: combining marks of every
# class (U+0345, the iota subscript, among them), default ignorables, jamo, Greek with
# iota subscripts, compatibility characters, Latin with composed and decomposed accents.
TRICKY = [chr(c) for c in range(0x300, 0x370)] + list(
    "\u0345\u037a\u0327\u05b0\u0e48\u3099\u309a\u0f71\u0f72\u00ad\u034f\u200b\u200d\ufe0f\u3164\u1160"
    "\u1100\u1161\u11a8\u3131\uac00αΑωΩιΙσΣς\u1f80\u1fb3\u1fbc\u0390\u1e9e\u0130\u0131\u212a\u00df"
    "\ufb01\u0149\u01f0\u2460\u3392\u00bd\u00b2\u00a0\u2026\uff0e\u00a8\u1fed\u0385\u0344\u0f77"
    "\u0958\ufb1d\u1e9b\u017faAeEsSkK\u00e9\u00c5\u212b\u01c4\u01c5\u0132 ,.'\u4e00\uff76\uff9e"
)


def test_random_sequences_of_tricky_characters_fold_as_keras_nlp():
    """Seeded random words of marks, ignorables and compatibility characters in any order:
    ICU folds each character and then composes, which order-sensitive cases (a mark
    before U+0345) tell apart from normalizing first."""
    rng = random.Random(0)
    lines = ["".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    assert our_words(lines) == keras_words(lines)


def test_counts_fold_distinct_words_once_and_sum_them():
    lines = read_lines(AWKWARD_CORPUS)
    expected = collections.Counter(w for words in keras_words(lines) for w in words)
    counts = pretokenizer.count_words([line.encode("utf-8") for line in lines], lowercase=True)
    assert counts == expected and counts["strasse"] >= 2 and counts[""] > 0  # Straße, STRASSE; a lone ignorable


def test_text_that_is_not_utf8_fails_with_a_message():
    with pytest.raises(ValueError, match="not UTF-8.*b'caf\\\\xe9'"):
        pretokenizer.count_words([b"fine", b"caf\xe9"], lowercase=True)
