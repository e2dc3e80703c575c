"""WordPiece vocabulary learning as a Beam job, identical in output to keras_nlp.

`keras_nlp.tokenizers.compute_word_piece_vocabulary` is three steps: pretokenize every
line, count the words, then run tensorflow_text's WordPiece learner once on the counts.
Here the first two run in parallel on Beam workers, and so does what the learner needs
to know about all the words (the smallest and largest count, the alphabet) and its
cut to the 5 M most frequent words; only the words it learns from reach one worker,
where `learner.learn` (tensorflow_text's algorithm, vectorised) runs. The learner's
result depends only on the word counts, so the vocabulary is the same token for token.

One documented difference: where more than 5 M distinct words survive the filters,
tensorflow_text keeps the most frequent 5 M and, among words tied at the cut, the ones
it saw first in the corpus; here ties at the cut are broken alphabetically, so the
result does not depend on which Beam worker read which file first.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam

# keras_nlp's own pretokenizer, so the word-splitting rules cannot drift from it.
from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize

from components.runtime.progress import Progress
from components.vocab_gen import learner

PRETOKENIZE_BATCH = 512

WordCount = Tuple[str, int]


def pretokenize_lines(lines: Sequence[bytes], lowercase: bool) -> List[bytes]:
    """Splits lines into words exactly as compute_word_piece_vocabulary(...) does."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    words = pretokenize(
        tf.constant(list(lines), dtype=tf.string),
        lowercase=lowercase,
        strip_accents=False,  # compute_word_piece_vocabulary's defaults
        split=True,
        split_on_cjk=True,
    )
    return words.flat_values.numpy().tolist()


def learn_vocabulary(
    word_counts: Iterable[Tuple[bytes, int]], vocabulary_size: int, reserved_tokens: Sequence[str]
) -> List[str]:
    """keras_nlp's vocabulary for these word counts (UTF-8 words), in one process."""
    counts = [(word.decode("utf-8"), count) for word, count in word_counts]
    if not counts:
        raise ValueError("Cannot learn a vocabulary from zero words.")
    return learner.learn(counts, vocabulary_size, reserved_tokens)[:vocabulary_size]


class _CountWordsInBatch(beam.DoFn):
    """Lines -> (word, count in this batch): Beam then sums far fewer elements than words."""

    def __init__(self, lowercase: bool):
        self._lowercase = lowercase
        self._progress = Progress("VocabGen", "lines pretokenized")

    def process(self, lines: List[bytes]) -> Iterable[WordCount]:
        for word, count in collections.Counter(pretokenize_lines(lines, self._lowercase)).items():
            yield word.decode("utf-8"), count
        self._progress.add(len(lines))


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
        | "Batch" >> beam.BatchElements(min_batch_size=PRETOKENIZE_BATCH, max_batch_size=PRETOKENIZE_BATCH)
        | "PretokenizeAndCount" >> beam.ParDo(_CountWordsInBatch(lowercase))
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
