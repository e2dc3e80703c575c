"""keras_nlp's WordPiece pretokenizer in plain Python: the same words, without TensorFlow.

`compute_word_piece_vocabulary(lowercase=True)` pretokenizes with keras_hub's
`pretokenize(text, lowercase=True, strip_accents=False, split=True, split_on_cjk=True)`:

1. `tf_text.regex_split` on one code point at a time: RE2's `\\s` (ASCII whitespace
   only: tab, newline, form feed, carriage return, space), `\\p{Cc}` and `\\p{Cf}` are
   dropped; ASCII symbols ``!-/ :-@ [-` {-~``, `\\p{P}` and the CJK ideograph blocks
   are kept, each as a word of its own; every maximal run of other characters is a word.
   (keras_hub first puts spaces around CJK characters; they are split off anyway.)
2. `tf_text.case_fold_utf8` on each word: ICU's NFKC_Casefold (NFKC, full case folding,
   Default_Ignorable_Code_Point removed, repeated until stable). It runs after the split,
   so a word may hold characters the split would have cut at (NBSP becomes a space).

Both read a line only up to its first NUL character.

Here step 1 is one `re` pattern whose character classes are built once from Python's
`unicodedata`, and step 2 runs once per distinct word. Python 3.10's Unicode tables
(13.0) are older than RE2's and newer than ICU's inside tensorflow_text: the code points
where they disagree are listed below (PUNCTUATION_AFTER_13, FORMAT_AFTER_13,
UNFOLDED_BY_ICU), found and kept honest by `tests/test_pretokenizer.py`, which compares
both pretokenizers on every code point and on every word of the corpora here.
"""

from __future__ import annotations

import collections
import functools
import re
import sys
import unicodedata
from typing import Iterable, List, Sequence

# keras_hub's PUNCTUATION_REGEX ASCII ranges and CJK_REGEX, as code point ranges.
ASCII_SYMBOLS = ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
RE2_WHITESPACE = "\t\n\f\r "
# The tables below are the differences between this Unicode version's `unicodedata` and
# tensorflow-text 2.16's RE2 and ICU: another Python would need them found again.
UNICODE_VERSION = "13.0.0"
if unicodedata.unidata_version != UNICODE_VERSION:
    raise ImportError(
        f"VocabGen's pretokenizer matches keras_nlp's for Python's Unicode {UNICODE_VERSION} tables (Python "
        f"3.10); this Python has {unicodedata.unidata_version}. Run on Python 3.10 (setup.py's python_requires), "
        "or re-derive the tables with tests/test_pretokenizer.py."
    )
# Where tensorflow_text's tables are newer or older than Python 3.10's Unicode 13.0, found
# by comparing both on every code point (tests/test_pretokenizer.py): punctuation and
# format characters RE2 knows from Unicode 14 and 15, and characters new in 13.0 that
# ICU's older tables leave as they are (no case folding, no NFKC).
PUNCTUATION_AFTER_13 = (
    (0x061D, 0x061D),
    (0x1B7D, 0x1B7E),
    (0x2E53, 0x2E5D),
    (0x10F86, 0x10F89),
    (0x116B9, 0x116B9),
    (0x11B00, 0x11B09),
    (0x11F43, 0x11F4F),
    (0x12FF1, 0x12FF2),
)
FORMAT_AFTER_13 = ((0x0890, 0x0891), (0x13439, 0x1343F))
UNFOLDED_BY_ICU = ((0xA7C7, 0xA7C7), (0xA7C9, 0xA7C9), (0xA7F5, 0xA7F5), (0xAB69, 0xAB69), (0x1FBF0, 0x1FBF9))
# DerivedCoreProperties.txt's Default_Ignorable_Code_Point (Unicode 13.0), which Python's
# unicodedata does not expose; NFKC_Casefold removes these.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _char_class(members: Sequence[bool]) -> str:
    """A regex character class body (no brackets) of the code points marked in `members`."""
    parts, start = [], None
    for cp, inside in enumerate([*members, False]):
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            parts.append(re.escape(chr(start)) + ("" if cp - 1 == start else "-" + re.escape(chr(cp - 1))))
            start = None
    return "".join(parts)


@functools.lru_cache(maxsize=None)
def _word_pattern(limit: int) -> "re.Pattern[str]":
    """For text of code points below `limit`: a kept delimiter, or a run of characters
    that are no delimiter; `findall` gives regex_split's words in order.

    Python's `re` tests a character against a class's code points above U+FFFF one range
    at a time, so a class with astral ranges is many times slower on every character:
    the BMP pattern (`limit` 0x10000) serves lines without astral characters.
    """
    categories = list(map(unicodedata.category, map(chr, range(limit))))
    kept = [category[0] == "P" for category in categories]
    dropped = [category in ("Cc", "Cf") for category in categories]
    for members, ranges in ((kept, ASCII_SYMBOLS + CJK + PUNCTUATION_AFTER_13), (dropped, FORMAT_AFTER_13)):
        for lo, hi in ranges:
            members[lo : hi + 1] = [True] * len(members[lo : hi + 1])
    for char in RE2_WHITESPACE:
        dropped[ord(char)] = True
    beyond = "" if limit > sys.maxunicode else re.escape(chr(limit)) + "-" + re.escape(chr(sys.maxunicode))
    kept_class = _char_class(kept)
    return re.compile(f"[{kept_class}]|[^{kept_class}{_char_class(dropped)}{beyond}]+")


BMP_LIMIT = 0x10000
_ASTRAL = re.compile(f"[{re.escape(chr(BMP_LIMIT))}-{re.escape(chr(sys.maxunicode))}]")
_IGNORABLE = {cp: None for lo, hi in DEFAULT_IGNORABLE for cp in range(lo, hi + 1)}
_UNFOLDED = re.compile("[" + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in UNFOLDED_BY_ICU) + "]")


def case_fold(word: str) -> str:
    """ICU's NFKC_Casefold of `word`, which `tf_text.case_fold_utf8` applies.

    ICU maps each character first and then composes (NFC): normalizing the word first
    would reorder U+0345 (the iota subscript, combining class 240) among other marks
    before it is folded to a plain ι (class 0), and give other words for Greek typed
    out of canonical order.
    """
    if word.isascii():
        return word.lower()
    return unicodedata.normalize("NFC", "".join(map(_fold_character, word)))


@functools.lru_cache(maxsize=None)
def _fold_character(char: str) -> str:
    """One character's NFKC_Casefold mapping; the characters ICU does not know stay."""
    return char if _UNFOLDED.fullmatch(char) else _nfkc_casefold(char)


def _nfkc_casefold(word: str) -> str:
    """NFKC, full case folding, no default ignorables, repeated until stable (UAX #44)."""
    while True:
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold().translate(_IGNORABLE))
        if folded == word:
            return folded
        word = folded


def split_words(line: str) -> List[str]:
    """The words `tf_text.regex_split` cuts `line` into, before any case folding.

    tensorflow_text reads a line only up to its first NUL character; so does this.
    """
    line = line.partition("\0")[0]
    limit = sys.maxunicode + 1 if _ASTRAL.search(line) else BMP_LIMIT
    return _word_pattern(limit).findall(line)


def pretokenize(line: str, lowercase: bool) -> List[str]:
    """keras_nlp's words of one line, in order."""
    words = split_words(line)
    return [case_fold(w) for w in words] if lowercase else words


def decode(line: bytes) -> str:
    """The line up to its first NUL (all that tensorflow_text reads) as text; keras_nlp
    too fails on text that is not UTF-8, here with the line."""
    try:
        return line.partition(b"\0")[0].decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"Cannot learn a vocabulary from text that is not UTF-8 ({error}): {line[:80]!r}") from None


class WordCounter:
    """Counts keras_nlp's words over lines, for one Beam bundle or a whole corpus.

    Words are counted as split; `counts` folds each distinct word once and sums the
    counts of words that fold alike, so folding costs per distinct word, not per word.
    """

    def __init__(self, lowercase: bool):
        self._lowercase = lowercase
        self._split: collections.Counter = collections.Counter()

    def add(self, line: bytes) -> None:
        self._split.update(split_words(decode(line)))

    @property
    def distinct_words(self) -> int:
        """Distinct words counted so far, as split (before folding)."""
        return len(self._split)

    def counts(self) -> collections.Counter:
        if not self._lowercase:
            return collections.Counter(self._split)
        folded: collections.Counter = collections.Counter()
        for word, count in self._split.items():
            folded[case_fold(word)] += count
        return folded


def count_words(lines: Iterable[bytes], lowercase: bool) -> collections.Counter:
    """keras_nlp's word counts of UTF-8 lines (`learner.count_words` of its pretokenizer)."""
    counter = WordCounter(lowercase)
    for line in lines:
        counter.add(line)
    return counter.counts()
