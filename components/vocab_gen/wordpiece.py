"""WordPiece vocabulary learning as a Beam job, identical in output to keras_nlp.

`keras_nlp.tokenizers.compute_word_piece_vocabulary` is three steps: pretokenize every
line, count the words, then run tensorflow_text's WordPiece learner once on the counts.
Here the first two run in parallel on Beam workers and only the learner runs on one
worker. The learner's result depends only on the word counts (its ties are broken by
count, then alphabetically), so the vocabulary is the same token for token.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import apache_beam as beam

# keras_nlp's own pretokenizer, so the word-splitting rules cannot drift from it.
from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

JOINER = "##"
PRETOKENIZE_BATCH = 512


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
    """Runs tensorflow_text's learner on word counts, with keras_nlp's settings.

    Counts are put in a canonical order (count desc, then word) first, so the result
    does not depend on the order in which Beam workers delivered them.
    """
    counts = sorted(((word.decode("utf-8"), count) for word, count in word_counts), key=lambda wc: (-wc[1], wc[0]))
    if not counts:
        raise ValueError("Cannot learn a vocabulary from zero words.")
    vocab = learner.learn(
        counts,
        vocab_size=vocabulary_size,
        reserved_tokens=list(reserved_tokens),
        include_joiner_token=True,
        joiner=JOINER,
    )
    return vocab[:vocabulary_size]


class _PretokenizeBatch(beam.DoFn):
    def __init__(self, lowercase: bool):
        self._lowercase = lowercase

    def process(self, lines: List[bytes]) -> Iterable[bytes]:
        yield from pretokenize_lines(lines, self._lowercase)


@beam.ptransform_fn
def ComputeVocabulary(  # pylint: disable=invalid-name
    lines: beam.PCollection, vocabulary_size: int, lowercase: bool, reserved_tokens: Sequence[str]
) -> beam.PCollection:
    """PCollection of text lines (bytes) -> a single-element PCollection: the vocab list."""
    return (
        lines
        | "Batch" >> beam.BatchElements(min_batch_size=PRETOKENIZE_BATCH, max_batch_size=PRETOKENIZE_BATCH)
        | "Pretokenize" >> beam.ParDo(_PretokenizeBatch(lowercase))
        | "CountWords" >> beam.combiners.Count.PerElement()
        | "GatherCounts" >> beam.combiners.ToList()
        | "Learn" >> beam.Map(learn_vocabulary, vocabulary_size, tuple(reserved_tokens))
    )
