"""TextExampleGen executor: text lines -> length filter -> tf.train.Example{text}.

The source-reading step is custom (as in TFX's CSV and Presto ExampleGens) and split
handling is inherited from `BaseExampleGenExecutor`. The writing is TFX's gzip TFRecords
of serialized Examples without TFX's `Reshuffle` before them: on Beam's local runner a
reshuffle holds every example of the corpus in the runner's memory (the peak RSS grew
~4 MB per corpus MB, BENCHMARKS.md §8), and nothing downstream depends on the order of
the records (the Trainer and the Evaluator read them in a canonical order). The executor
also counts what it read, kept and dropped (Beam counters), records the counts and each
split's source and sha256 on the Examples artifact, and refuses to publish a split that
has nothing to train on.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Iterable, List

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.data.formats import (
    LENGTH_BUCKET_BYTES,
    LENGTH_BUCKETS,
    LINE_COUNTERS,
    files_sha256,
    length_bucket,
    text_to_example,
)
from components.data.paragraphs import DropExactDuplicates
from components.runtime.errors import InputDataError
from components.runtime.progress import Progress

logger = logging.getLogger(__name__)

MIN_LENGTH_KEY = "min_training_seq_len"
MAX_LENGTH_KEY = "max_line_bytes"
# "exact": drop exact duplicate lines of each split (one copy kept); "none" or absent: keep all.
DEDUP_KEY = "dedup"
EXACT_DEDUP = "exact"
METRICS_NAMESPACE = "TextExampleGen"
# Above this share of undecodable lines a file is taken to be in the wrong encoding.
MAX_UNDECODABLE_FRACTION = 0.01


UTF8_BOM = b"\xef\xbb\xbf"
# Counter `<pattern>:length_<lowest byte length>`: lines read, by length bucket.
LENGTH_PREFIX = "length_"


def counter_name(split_pattern: str, counter: str) -> str:
    return f"{split_pattern}:{counter}"


class _FilterLines(beam.DoFn):
    """Keeps lines longer than `min_length` bytes, at most `max_length` bytes, that decode
    as UTF-8, counting each fate."""

    def __init__(self, min_length: int, split_pattern: str, max_length: int = 1_000_000):
        self._min_length = min_length
        self._max_length = max_length
        self._counters = {
            name: beam.metrics.Metrics.counter(METRICS_NAMESPACE, counter_name(split_pattern, name))
            for name in LINE_COUNTERS
        }
        # One counter per length bucket, made once: this runs for every line.
        self._length_counters = {
            low: beam.metrics.Metrics.counter(METRICS_NAMESPACE, counter_name(split_pattern, f"{LENGTH_PREFIX}{low}"))
            for low in range(0, LENGTH_BUCKETS * LENGTH_BUCKET_BYTES, LENGTH_BUCKET_BYTES)
        }
        self._progress = Progress(f"TextExampleGen[{split_pattern}]", "lines read")

    def process(self, line: bytes) -> Iterable[bytes]:
        if line.startswith(UTF8_BOM):  # a file saved "with BOM": not part of the text
            line = line[len(UTF8_BOM) :]
        self._counters["lines_read"].inc()
        self._progress.add()
        self._length_counters[length_bucket(len(line))].inc()
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self._counters["lines_not_utf8"].inc()
            return
        # Length in bytes, as the reference's tf.strings.length(x) > MIN_TRAINING_SEQ_LEN.
        if len(line) <= self._min_length:
            self._counters["lines_too_short"].inc()
            return
        if len(line) > self._max_length:
            self._counters["lines_too_long"].inc()
            return
        self._counters["lines_kept"].inc()
        yield line


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _TextToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """Reads the text files matching `split_pattern` under input_base as Examples."""
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    min_length, max_length = int(exec_properties[MIN_LENGTH_KEY]), int(exec_properties[MAX_LENGTH_KEY])
    file_pattern = os.path.join(input_base, split_pattern)
    logger.info("Reading %s (keeping lines longer than %d bytes).", file_pattern, min_length)
    lines = (
        pipeline
        # Bytes, not str: a stray non-UTF-8 line is counted and skipped, not a crash.
        | "ReadLines" >> beam.io.ReadFromText(file_pattern, coder=beam.coders.BytesCoder())
        | "FilterLines" >> beam.ParDo(_FilterLines(min_length, split_pattern, max_length))
    )
    if exec_properties.get(DEDUP_KEY) == EXACT_DEDUP:
        lines |= "DropExactDuplicates" >> DropExactDuplicates(
            METRICS_NAMESPACE, counter_name(split_pattern, "lines_duplicate")
        )
    return lines | "ToExample" >> beam.Map(text_to_example)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generic ExampleGen over text files, with line accounting and empty-split checks."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _TextToExample

    def _make_beam_pipeline(self) -> beam.Pipeline:
        # Keep the pipeline: after `with pipeline:` exits, `.result` holds its counters.
        self._beam_pipeline = super()._make_beam_pipeline()
        return self._beam_pipeline

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes Split-<name> shards (TFX's files and format, in read order) and records
        per-split line counts.

        Args:
          input_dict: unused (ExampleGen reads `input_base`).
          output_dict: `examples`: the Examples artifact to write.
          exec_properties: `input_base` (corpus directory), `input_config` (split name ->
            file pattern), `output_config` and `min_training_seq_len`.

        Raises:
          InputDataError: a split kept no line, or a file is mostly not UTF-8.
        """
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config)
        )
        with self._make_beam_pipeline() as pipeline:
            for split_name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                split_uri = artifact_utils.get_split_uri([examples], split_name)
                _ = split | f"WriteSplit[{split_name}]" >> _WriteSplitInReadOrder(split_uri)
        # What TFX's ExampleGen records for its readers (ExampleValidator, Transform, ...).
        examples_utils.set_payload_format(examples, exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        file_format = exec_properties[standard_component_specs.OUTPUT_FILE_FORMAT_KEY]
        examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))
        counts = _query_counters(self._beam_pipeline.result)
        try:
            for split in input_config.splits:
                split_counts = {name: counts.get(counter_name(split.pattern, name), 0) for name in LINE_COUNTERS}
                path = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split.pattern)
                _check_split(split.name, path, split_counts)
                for name, value in split_counts.items():
                    examples.set_int_custom_property(f"{split.name}_{name}", value)
                examples.set_string_custom_property(f"{split.name}_source", path)
                examples.set_string_custom_property(
                    f"{split.name}_sha256", files_sha256(sorted(tf.io.gfile.glob(path)))
                )
                histogram = {
                    name[len(f"{split.pattern}:{LENGTH_PREFIX}") :]: value
                    for name, value in counts.items()
                    if name.startswith(f"{split.pattern}:{LENGTH_PREFIX}")
                }
                examples.set_string_custom_property(f"{split.name}_length_histogram", json.dumps(histogram))
                logger.info("Split %s (%s): %s", split.name, path, split_counts)
        except InputDataError:
            # Leave nothing behind that looks like a complete Examples artifact.
            fileio.rmtree(examples.uri)
            raise


@beam.ptransform_fn
def _WriteSplitInReadOrder(examples: beam.pvalue.PCollection, split_uri: str) -> beam.pvalue.PDone:  # noqa: N802
    """TFX's `WriteSplit` (same files, same format) without its `Reshuffle`."""
    return (
        examples
        | "Serialize" >> beam.ParDo(write_split.MaybeSerialize())
        | "Write"
        >> beam.io.WriteToTFRecord(os.path.join(split_uri, write_split.DEFAULT_FILE_NAME), file_name_suffix=".gz")
    )


def _query_counters(result: beam.runners.runner.PipelineResult) -> Dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    return {c.key.metric.name: c.committed for c in query["counters"]}


def _check_split(split: str, path: str, counts: Dict[str, int]) -> None:
    read, bad = counts["lines_read"], counts["lines_not_utf8"]
    if read and bad > MAX_UNDECODABLE_FRACTION * read:
        raise InputDataError(
            f"{path}: {bad} of {read} lines are not valid UTF-8; "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        )
    if bad:
        logger.warning("%s: skipped %d lines that are not valid UTF-8.", path, bad)
    if counts["lines_too_long"]:
        logger.warning("%s: skipped %d lines longer than data.max_line_bytes.", path, counts["lines_too_long"])
    if counts["lines_kept"] == 0:
        raise InputDataError(
            f"{path}: no line of the {split} split is longer than data.min_training_seq_len "
            f"({read} lines read); lower data.min_training_seq_len or use a corpus with "
            "one paragraph per line."
        )
