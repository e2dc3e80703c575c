"""Tokenize executor: text Examples -> WordPiece token ids, once, on Beam workers.

The reference tokenizes inside the training input pipeline, every epoch, competing with
the training step for the same cores (on a GPU the step would wait for it). Here every
split is tokenized once, in parallel, and written as token-id Examples that the Trainer
and the Evaluator read directly. The ids are those of the reference's tokenizer
(`keras_hub.tokenizers.WordPieceTokenizer` with the learned vocabulary), truncated to
the sequence length as its `sequence_length` does.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterable, List

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.data.artifact_types import Vocabulary, read_vocabulary
from components.data.formats import (
    LINE_COUNTERS,
    SOURCE_PROPERTIES,
    TOKEN_COUNTERS,
    UNK_TOKEN,
    example_text,
    ids_to_example,
)
from components.runtime.progress import Progress

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
VOCABULARY_KEY = "vocabulary"
TOKEN_IDS_KEY = "token_ids"
SEQ_LEN_KEY = "seq_len"
LOWERCASE_KEY = "lowercase"
METRICS_NAMESPACE = "Tokenize"

BATCH_SIZE = 256


class _TokenizeLines(beam.DoFn):
    """A batch of text lines -> one token-id Example per line, counting what it emits."""

    def __init__(self, vocab_path: str, seq_len: int, lowercase: bool, split: str):
        self._vocab_path = vocab_path
        self._seq_len = seq_len
        self._lowercase = lowercase
        self._counters = {
            name: beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{split}_{name}") for name in TOKEN_COUNTERS
        }
        self._tokenizer = None
        self._unk_id = None
        self._progress = Progress(f"Tokenize[{split}]", "lines tokenized")

    def setup(self) -> None:
        import keras_hub  # pylint: disable=import-outside-toplevel  (heavy; once per worker)

        self._tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=read_vocabulary(self._vocab_path), lowercase=self._lowercase
        )
        self._unk_id = self._tokenizer.token_to_id(UNK_TOKEN)

    def process(self, lines: List[bytes]) -> Iterable[bytes]:
        # Called eagerly, keras_hub's tokenizers return one Python list of ids per line.
        for ids in self._tokenizer(lines):
            kept = ids[: self._seq_len]
            self._counters["sequences"].inc()
            self._counters["tokens"].inc(len(kept))
            self._counters["unk_tokens"].inc(kept.count(self._unk_id))
            self._counters["truncated_sequences"].inc(int(len(ids) > self._seq_len))
            yield ids_to_example(kept).SerializeToString()
        self._progress.add(len(lines))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Tokenizes every split of the text Examples into token-id Examples."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes Split-<name>/ gzip TFRecords of token-id Examples and records counts.

        Args:
          input_dict: `examples` (text Examples from TextExampleGen) and `vocabulary`.
          output_dict: `token_ids`: an Examples artifact with the same splits.
          exec_properties: `seq_len` (ids kept per line) and `lowercase` (int 0/1).
        """
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        vocabulary = artifact_utils.get_single_instance(input_dict[VOCABULARY_KEY])
        token_ids = artifact_utils.get_single_instance(output_dict[TOKEN_IDS_KEY])
        vocab_path = os.path.join(vocabulary.uri, Vocabulary.FILE_NAME)
        splits = artifact_utils.decode_split_names(examples.split_names)
        token_ids.split_names = artifact_utils.encode_split_names(splits)
        seq_len, lowercase = int(exec_properties[SEQ_LEN_KEY]), bool(exec_properties[LOWERCASE_KEY])
        with self._make_beam_pipeline() as pipeline:
            for split in splits:
                source = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
                _ = (
                    pipeline
                    | f"Read[{split}]"
                    >> beam.io.ReadFromTFRecord(source, compression_type=beam.io.filesystem.CompressionTypes.GZIP)
                    | f"Text[{split}]" >> beam.Map(example_text)
                    | f"Batch[{split}]" >> beam.BatchElements(min_batch_size=BATCH_SIZE, max_batch_size=BATCH_SIZE)
                    | f"Tokenize[{split}]" >> beam.ParDo(_TokenizeLines(vocab_path, seq_len, lowercase, split))
                    | f"Write[{split}]"
                    >> beam.io.WriteToTFRecord(
                        os.path.join(artifact_utils.get_split_uri([token_ids], split), "data_tfrecord"),
                        file_name_suffix=".gz",
                    )
                )
        counts = pipeline.result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
        for counter in counts:
            token_ids.set_int_custom_property(counter.key.metric.name, counter.committed)
        # The line counts and sources describe the same data: carried along so one artifact
        # tells its story.
        for name, value in examples.mlmd_artifact.custom_properties.items():
            if name.endswith(LINE_COUNTERS + SOURCE_PROPERTIES):
                token_ids.mlmd_artifact.custom_properties[name].CopyFrom(value)
        logger.info(
            "Tokenized %s",
            {name: token_ids.get_int_custom_property(name) for name in token_ids.mlmd_artifact.custom_properties
             if name.endswith(TOKEN_COUNTERS)},
        )  # fmt: skip
