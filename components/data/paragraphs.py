"""Exact-duplicate paragraphs, found by digest in Beam: dropped by TextExampleGen
(`data.dedup: exact`), counted within and across splits by DataCheck.

Paragraphs are grouped by a 16-byte digest, never by their text: a group-by of the
texts would hold the whole corpus in the DirectRunner's memory, as a reshuffle does
(BENCHMARKS.md §8).
"""

from __future__ import annotations

import hashlib
from typing import Iterable, List, Mapping, Tuple

import apache_beam as beam

# Counter of DataCheck's shared-paragraph counts: `<split>_duplicate_paragraphs` (copies
# beyond the first within a split) and `<split>_leaked_paragraphs` (paragraphs of a split
# other than train that the train split also holds).
DUPLICATE_COUNTER, LEAKED_COUNTER = "duplicate_paragraphs", "leaked_paragraphs"
TRAIN_SPLIT = "train"


def digest(paragraph: bytes) -> bytes:
    """The paragraph's identity: exact bytes, so a changed character is another paragraph."""
    return hashlib.blake2b(paragraph, digest_size=16).digest()


class _SplitOffRepeated(beam.DoFn):
    """Paragraphs seen once pass on in read order; those repeated go to REPEATED, keyed."""

    REPEATED = "repeated"

    def process(self, paragraph: bytes, repeated: Mapping[bytes, int]) -> Iterable:
        key = digest(paragraph)
        if key in repeated:
            yield beam.pvalue.TaggedOutput(self.REPEATED, (key, paragraph))
        else:
            yield paragraph


class _FirstCopy(beam.DoFn):
    """One copy of a repeated paragraph, counting the copies dropped."""

    def __init__(self, namespace: str, counter: str):
        self._dropped = beam.metrics.Metrics.counter(namespace, counter)

    def process(self, keyed: Tuple[bytes, List[bytes]]) -> Iterable[bytes]:
        _, copies = keyed
        copies = list(copies)
        self._dropped.inc(len(copies) - 1)
        yield copies[0]


@beam.ptransform_fn
def DropExactDuplicates(  # noqa: N802 (Beam names transforms in CamelCase)
    paragraphs: beam.pvalue.PCollection, namespace: str, counter: str
) -> beam.pvalue.PCollection:
    """Keeps one copy of each paragraph; counts the copies dropped in Beam counter
    `namespace:counter`.

    The same input gives the same paragraphs: those that occur once keep their read order,
    and one copy of each repeated one follows (the copies are byte for byte the same).
    """
    digests = paragraphs | "Digest" >> beam.Map(digest)
    repeated = (
        digests
        | "Count" >> beam.combiners.Count.PerElement()
        | "Repeated" >> beam.Filter(lambda digest_count: digest_count[1] > 1)
    )
    split = paragraphs | "SplitOffRepeated" >> beam.ParDo(
        _SplitOffRepeated(), beam.pvalue.AsDict(repeated)
    ).with_outputs(_SplitOffRepeated.REPEATED, main="once")
    first_copies = (
        split[_SplitOffRepeated.REPEATED]
        | "GroupCopies" >> beam.GroupByKey()
        | "FirstCopy" >> beam.ParDo(_FirstCopy(namespace, counter))
    )
    return (split["once"], first_copies) | "Merge" >> beam.Flatten()


class _CountShared(beam.DoFn):
    """One paragraph digest's occurrences per split -> duplicate and leak counters."""

    def __init__(self, namespace: str, splits: Iterable[str]):
        self._duplicates = {s: beam.metrics.Metrics.counter(namespace, f"{s}_{DUPLICATE_COUNTER}") for s in splits}
        self._leaked = {s: beam.metrics.Metrics.counter(namespace, f"{s}_{LEAKED_COUNTER}") for s in splits}

    def process(self, keyed: Tuple[bytes, Iterable[str]]) -> None:
        _, splits = keyed
        occurrences: dict = {}
        for split in splits:
            occurrences[split] = occurrences.get(split, 0) + 1
        for split, count in occurrences.items():
            if count > 1:
                self._duplicates[split].inc(count - 1)
            if split != TRAIN_SPLIT and TRAIN_SPLIT in occurrences:
                self._leaked[split].inc(count)


@beam.ptransform_fn
def CountSharedParagraphs(  # noqa: N802 (Beam names transforms in CamelCase)
    splits: Tuple[beam.pvalue.PCollection, ...], split_names: Tuple[str, ...], namespace: str
) -> beam.pvalue.PCollection:
    """Counts, in Beam counters `namespace:<split>_duplicate_paragraphs` and
    `namespace:<split>_leaked_paragraphs`, the repeated paragraphs of each split and those
    of each other split that are in the train split too.

    Args:
      splits: one PCollection of paragraphs (bytes) per split, in `split_names`' order.
      split_names: the splits' names; "train" is the one the others must not share with.
      namespace: the counters' Beam namespace.
    """
    tagged = [
        paragraphs | f"Tag[{name}]" >> beam.Map(lambda paragraph, name=name: (digest(paragraph), name))
        for paragraphs, name in zip(splits, split_names)
    ]
    return (
        tagged
        | "AllSplits" >> beam.Flatten()
        | "GroupByParagraph" >> beam.GroupByKey()
        | "CountShared" >> beam.ParDo(_CountShared(namespace, split_names))
    )
