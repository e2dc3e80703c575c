"""WordPiece vocabulary learning as a Beam job, identical in output to keras_nlp.

`keras_nlp.tokenizers.compute_word_piece_vocabulary` is three steps: pretokenize every
line, count the words, then run tensorflow_text's WordPiece learner once on the counts.
Here the first two run in parallel on Beam workers, and so does what the learner needs
to know about all the words (the smallest and largest count, the alphabet) and its
cut to the 5 M most frequent words; only the words it learns from reach one worker,
where `learner.learn` (tensorflow_text's algorithm, vectorised) runs. The learner's
result depends only on the word counts, so the vocabulary is the same token for token.

Pretokenizing is `pretokenizer` (keras_nlp's rules in plain Python, no TensorFlow: a
worker process starts in a second, not in the 5-15 s a TensorFlow import takes), and
each worker counts a whole bundle in one `Counter` before Beam sees a word. The counts
then travel as `WORD_PARTS` dicts, words spread over them by a hash, so Beam handles one
element per part and flush of a worker's counts rather than one per distinct word.

One documented difference: where more than 5 M distinct words survive the filters,
tensorflow_text keeps the most frequent 5 M and, among words tied at the cut, the ones
it saw first in the corpus; here ties at the cut are broken alphabetically, so the
result does not depend on which Beam worker read which file first.
"""

from __future__ import annotations

import collections
import heapq
import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.transforms import window
from tfx_bsl.coders.example_coder import ExampleToNumpyDict

from components.data.formats import TEXT_FEATURE
from components.runtime.progress import Progress
from components.vocab_gen import learner, pretokenizer

WordCount = Tuple[str, int]


def pretokenize_lines(lines: Sequence[bytes], lowercase: bool) -> List[bytes]:
    """Splits lines into words exactly as compute_word_piece_vocabulary(...) does."""
    return [
        word.encode("utf-8")
        for line in lines
        for word in pretokenizer.pretokenize(pretokenizer.decode(line), lowercase)
    ]


def example_text(serialized: bytes) -> bytes:
    """`formats.example_text` with tfx_bsl's C++ decoder instead of TensorFlow's protos,
    so that no worker process of this job imports TensorFlow."""
    return ExampleToNumpyDict(serialized)[TEXT_FEATURE][0]


def learn_vocabulary(
    word_counts: Iterable[Tuple[bytes, int]], vocabulary_size: int, reserved_tokens: Sequence[str]
) -> List[str]:
    """keras_nlp's vocabulary for these word counts (UTF-8 words), in one process."""
    counts = [(word.decode("utf-8"), count) for word, count in word_counts]
    if not counts:
        raise ValueError("Cannot learn a vocabulary from zero words.")
    return learner.learn(counts, vocabulary_size, reserved_tokens)[:vocabulary_size]


# Distinct words (as split, before case folding) a worker counts before it hands them on:
# a bundle can be a whole shard, and a corpus millions of distinct words. ~100 bytes each.
MAX_WORDS_IN_BUNDLE = 500_000

# Word counts travel between the job's steps as this many parts, each part the words of
# one hash value (`word_part`) and their counts in one dict (per part, a worker hands on
# one dict each time it flushes its counts). As one Beam element per distinct word, each
# of the 78 k distinct words of a 55 MB corpus paid Beam's per-element cost in four
# steps (sum, statistics, filter, top): in memory, VocabGen took 7.1-7.4 s, now 5.5-5.9
# (BENCHMARKS.md §6). The parts still spread the summing over workers, up to 64 at a
# time; a part holds 1/64 of the distinct words (1.5 M of a 100 M-word corpus).
WORD_PARTS = 64

WordCounts = Dict[str, int]


def word_part(word: str) -> int:
    """Which part a word's count travels in: the same in every worker process (Python's
    own `hash` of a str differs between processes)."""
    return zlib.crc32(word.encode("utf-8")) % WORD_PARTS


def split_into_parts(counts: WordCounts) -> Iterable[Tuple[int, WordCounts]]:
    """(part, {word: count}) for every part that holds a word of `counts`."""
    parts: Dict[int, WordCounts] = collections.defaultdict(dict)
    for word, count in counts.items():
        parts[word_part(word)][word] = count
    return parts.items()


class _CountWordsInBundle(beam.DoFn):
    """Lines -> (part, {word: count in this bundle}), emitted when the bundle ends."""

    def __init__(self, lowercase: bool):
        self._lowercase = lowercase
        self._progress = Progress("VocabGen", "lines pretokenized")
        self._counter: Optional[pretokenizer.WordCounter] = None

    def start_bundle(self) -> None:
        self._counter = pretokenizer.WordCounter(self._lowercase)

    def process(self, line: bytes) -> Iterable[Tuple[int, WordCounts]]:
        self._counter.add(line)
        self._progress.add()
        if self._counter.distinct_words > MAX_WORDS_IN_BUNDLE:  # bounds a worker's memory
            yield from split_into_parts(self._counter.counts())
            self._counter = pretokenizer.WordCounter(self._lowercase)

    def finish_bundle(self) -> Iterable[window.WindowedValue]:
        for part in split_into_parts(self._counter.counts()):
            yield window.GlobalWindows.windowed_value(part)
        self._counter = None


def sum_counts(part: int, counts: Iterable[WordCounts]) -> WordCounts:
    """One part's word counts from every bundle, summed (`part` is the grouping key)."""
    del part
    total: Dict[str, int] = {}
    for bundle_counts in counts:
        for word, count in bundle_counts.items():
            total[word] = total.get(word, 0) + count
    return total


class _CorpusStatsFn(beam.CombineFn):
    """Over every word's count: the smallest and largest count (the learner's threshold
    search bounds) and the character counts of the words the learner may keep (its
    alphabet). Input: {word: count} parts. Accumulator: (min, max, Counter of characters)."""

    def __init__(self, reserved_tokens: Sequence[str]):
        self._reserved = frozenset(reserved_tokens)

    def create_accumulator(self):
        return None, None, collections.Counter()

    def add_input(self, acc, counts: WordCounts):
        low, high, chars = acc
        if not counts:
            return acc
        for word, count in counts.items():
            if _eligible(word, self._reserved):
                for char in word:
                    chars[char] += count
        smallest, largest = min(counts.values()), max(counts.values())
        if low is not None:
            smallest, largest = min(low, smallest), max(high, largest)
        return smallest, largest, chars

    def merge_accumulators(self, accumulators):
        lows, highs, merged = [], [], collections.Counter()
        for low, high, chars in accumulators:
            if low is not None:
                lows.append(low)
                highs.append(high)
            merged.update(chars)
        return (min(lows) if lows else None), (max(highs) if highs else None), merged

    def extract_output(self, acc) -> Optional[Dict]:
        low, high, chars = acc
        if low is None:
            return None
        return {"bounds": learner.search_bounds([low, high]), "alphabet": learner.alphabet(chars)}


def _eligible(word: str, reserved: frozenset) -> bool:
    """tensorflow_text's first filter: not longer than its token limit, not reserved."""
    return len(word) <= learner.MAX_TOKEN_LENGTH and word not in reserved


def _learnable(counts: WordCounts, stats: Optional[Dict], reserved: frozenset) -> List[WordCount]:
    """The (word, count)s of a part the learner may learn from."""
    if stats is None:
        return []
    alphabet = stats["alphabet"]
    return [
        (word, count)
        for word, count in counts.items()
        if _eligible(word, reserved) and all(c in alphabet for c in word)
    ]


def _most_frequent(word_counts: List[WordCount], limit: int) -> List[WordCount]:
    """The `limit` highest counts, ties alphabetical: the learner's own cut, made here so
    that at most `limit` words reach its worker whatever order they arrive in."""
    if len(word_counts) <= limit:
        return word_counts
    return heapq.nsmallest(limit, word_counts, key=lambda wc: (-wc[1], wc[0]))


class _MostFrequentFn(beam.CombineFn):
    """Lists of (word, count) -> the `learner.MAX_INPUT_TOKENS` most frequent words (read
    when the pipeline runs, so tests can lower it). An accumulator is cut back to that
    many whenever it passes twice as many (Beam's `Top` keeps a heap of that many: this
    holds up to twice its memory, for a sort per cut instead of a heap push per word);
    words are distinct here (summed), so an early cut keeps the same words as a late one."""

    def create_accumulator(self) -> List[WordCount]:
        return []

    def add_input(self, acc: List[WordCount], word_counts: List[WordCount]) -> List[WordCount]:
        acc.extend(word_counts)
        return _most_frequent(acc, learner.MAX_INPUT_TOKENS) if len(acc) > 2 * learner.MAX_INPUT_TOKENS else acc

    def merge_accumulators(self, accumulators) -> List[WordCount]:
        merged: List[WordCount] = []
        for acc in accumulators:
            merged = self.add_input(merged, acc)
        return merged

    def extract_output(self, acc: List[WordCount]) -> List[WordCount]:
        return _most_frequent(acc, learner.MAX_INPUT_TOKENS)


def _learn(words: List[WordCount], stats: Optional[Dict], vocabulary_size: int, reserved: Sequence[str]) -> List[str]:
    if stats is None or not words:
        raise ValueError("Cannot learn a vocabulary from zero words: the train split has no text.")
    return learner.learn(words, vocabulary_size, reserved, bounds=stats["bounds"])[:vocabulary_size]


@beam.ptransform_fn
def ComputeVocabulary(  # pylint: disable=invalid-name
    lines: beam.PCollection, vocabulary_size: int, lowercase: bool, reserved_tokens: Sequence[str]
) -> beam.PCollection:
    """PCollection of text lines (bytes) -> a single-element PCollection: the vocab list."""
    reserved = frozenset(reserved_tokens)
    counts = (
        lines
        | "PretokenizeAndCount" >> beam.ParDo(_CountWordsInBundle(lowercase))
        # Grouped, not combined: Beam lifts a combiner into the counting worker, where its
        # table of 64 keys would grow with every distinct word of the bundle and undo the
        # MAX_WORDS_IN_BUNDLE bound. The counting DoFn has already summed its bundle.
        | "GroupParts" >> beam.GroupByKey()
        | "SumCounts" >> beam.MapTuple(sum_counts)
    )
    stats = counts | "CorpusStats" >> beam.CombineGlobally(_CorpusStatsFn(reserved_tokens))
    stats_side = beam.pvalue.AsSingleton(stats)
    return (
        counts
        | "KeepLearnable" >> beam.Map(_learnable, stats_side, reserved)
        | "MostFrequent" >> beam.CombineGlobally(_MostFrequentFn())
        | "Learn" >> beam.Map(_learn, stats_side, vocabulary_size, tuple(reserved_tokens))
    )
