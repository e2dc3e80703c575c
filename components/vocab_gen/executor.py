"""VocabGen executor: learns the WordPiece vocabulary from the train split in Beam."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.data.artifact_types import Vocabulary, read_vocabulary
from components.data.formats import example_text
from components.vocab_gen.wordpiece import ComputeVocabulary

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
VOCABULARY_KEY = "vocabulary"
VOCABULARY_SIZE_KEY = "vocabulary_size"
LOWERCASE_KEY = "lowercase"
RESERVED_TOKENS_KEY = "reserved_tokens"
SPLIT = "train"


class Executor(base_beam_executor.BaseBeamExecutor):
    """Pretokenizes and counts words on Beam workers, then learns the vocab once."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes `vocab.txt` (one token per line, reserved tokens first).

        Args:
          input_dict: `examples`: Examples with a `train` split of tf.Example{text}.
          output_dict: `vocabulary`: the Vocabulary artifact to write.
          exec_properties: `vocabulary_size` (int, an upper bound), `lowercase` (int 0/1),
            `reserved_tokens` (JSON list of strings).
        """
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        vocabulary = artifact_utils.get_single_instance(output_dict[VOCABULARY_KEY])
        pattern = os.path.join(artifact_utils.get_split_uri([examples], SPLIT), "*")
        vocab_path = os.path.join(vocabulary.uri, Vocabulary.FILE_NAME)
        logger.info("Learning a WordPiece vocabulary from %s", pattern)
        with self._make_beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "ReadExamples"
                >> beam.io.ReadFromTFRecord(pattern, compression_type=beam.io.filesystem.CompressionTypes.GZIP)
                | "ExtractText" >> beam.Map(example_text)
                | "ComputeVocabulary"
                >> ComputeVocabulary(
                    vocabulary_size=int(exec_properties[VOCABULARY_SIZE_KEY]),
                    lowercase=bool(exec_properties[LOWERCASE_KEY]),
                    reserved_tokens=json.loads(exec_properties[RESERVED_TOKENS_KEY]),
                )
                | "JoinLines" >> beam.Map("\n".join)
                | "WriteVocab" >> beam.io.WriteToText(vocab_path, shard_name_template="")
            )
        size = len(read_vocabulary(vocab_path))
        vocabulary.set_int_custom_property("size", size)
        logger.info("Wrote %d tokens to %s", size, vocab_path)
