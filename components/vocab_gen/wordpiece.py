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
each worker counts a whole bundle in one `Counter` before Beam sees a word: Beam then
sums one (word, count) per distinct word and bundle instead of one per word.

One documented difference: where more than 5 M distinct words survive the filters,
tensorflow_text keeps the most frequent 5 M and, among words tied at the cut, the ones
it saw first in the corpus; here ties at the cut are broken alphabetically, so the
result does not depend on which Beam worker read which file first.
"""

from __future__ import annotations

import collections
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


class _CountWordsInBundle(beam.DoFn):
    """Lines -> (word, count in this bundle), emitted when the bundle ends."""

    def __init__(self, lowercase: bool):
        self._lowercase = lowercase
        self._progress = Progress("VocabGen", "lines pretokenized")
        self._counter: Optional[pretokenizer.WordCounter] = None

    def start_bundle(self) -> None:
        self._counter = pretokenizer.WordCounter(self._lowercase)

    def process(self, line: bytes) -> Iterable[WordCount]:
        self._counter.add(line)
        self._progress.add()
        if self._counter.distinct_words > MAX_WORDS_IN_BUNDLE:  # bounds a worker's memory
            yield from self._counter.counts().items()
            self._counter = pretokenizer.WordCounter(self._lowercase)

    def finish_bundle(self) -> Iterable[window.WindowedValue]:
        for word_count in self._counter.counts().items():
            yield window.GlobalWindows.windowed_value(word_count)
        self._counter = None


class _CorpusStatsFn(beam.CombineFn):
    """Over every (word, count): the smallest and largest count (the learner's threshold
    search bounds) and the character counts of the words the learner may keep (its
    alphabet). Accumulator: (min, max, Counter of characters)."""

    def __init__(self, reserved_tokens: Sequence[str]):
        self._reserved = frozenset(reserved_tokens)

    def create_accumulator(self):
        return None, None, collections.Counter()

    def add_input(self, acc, word_count: WordCount):
        low, high, chars = acc
        word, count = word_count
        if _eligible(word, self._reserved):
            for char in word:
                chars[char] += count
        return (count if low is None else min(low, count)), (count if high is None else max(high, count)), chars

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


def _learnable(word_count: WordCount, stats: Optional[Dict], reserved: frozenset) -> bool:
    word = word_count[0]
    return stats is not None and _eligible(word, reserved) and all(c in stats["alphabet"] for c in word)


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
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    stats = counts | "CorpusStats" >> beam.CombineGlobally(_CorpusStatsFn(reserved_tokens))
    stats_side = beam.pvalue.AsSingleton(stats)
    return (
        counts
        | "KeepLearnable" >> beam.Filter(_learnable, stats_side, reserved)
        # The learner's own cut, done here so that at most 5 M words reach its worker:
        # highest counts first, ties alphabetical (keys are compared smallest first).
        | "MostFrequent"
        >> beam.combiners.Top.Of(learner.MAX_INPUT_TOKENS, key=lambda wc: (-wc[1], wc[0]), reverse=True)
        | "Learn" >> beam.Map(_learn, stats_side, vocabulary_size, tuple(reserved_tokens))
    )
