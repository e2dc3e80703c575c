"""VocabGen executor: learns the WordPiece vocabulary from the train split in Beam, or
keeps the champion's.

A scheduled run on new data that learned a vocabulary of its own would make a model
whose tokens are other units than the champion's: its perplexity would not compare
(no blessing) and the champion's weights would not fit it (no warm start). With
`vocab.source: champion` the champion's vocabulary is kept, as long as it
was learned with this run's vocab settings; otherwise a new one is learned, and the
log says why.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components.data.artifact_types import Vocabulary, read_vocabulary
from components.vocab_gen.wordpiece import ComputeVocabulary, example_text

if TYPE_CHECKING:
    from components.tracking.champion import Champion

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
SOURCE_KEY = "source"
VOCABULARY_KEY = "vocabulary"
VOCABULARY_SIZE_KEY = "vocabulary_size"
LOWERCASE_KEY = "lowercase"
RESERVED_TOKENS_KEY = "reserved_tokens"
SPLIT = "train"
# On the Vocabulary artifact: "learned", or "champion version <N>".
SOURCE_PROPERTY = "source"


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
        vocabulary = artifact_utils.get_single_instance(output_dict[VOCABULARY_KEY])
        vocab_path = os.path.join(vocabulary.uri, Vocabulary.FILE_NAME)
        if exec_properties.get(SOURCE_KEY) == "champion":
            # Imported here: MLflow and Keras take ~8 s to import, and a run that learns
            # (a process of its own under Kubeflow) needs neither.
            from components.tracking.champion import NO_CHAMPION, VERSION_PROPERTY, current_champion
            from components.tracking.mlflow_runs import tracking_from_environment

            with current_champion(tracking_from_environment()["tracking_uri"]) as champion:
                vocabulary.set_string_custom_property(VERSION_PROPERTY, champion.version if champion else NO_CHAMPION)
                kept, why = _champion_vocabulary(champion, exec_properties) if champion else (None, "no champion yet")
                if kept:
                    fileio.makedirs(vocabulary.uri)
                    fileio.copy(kept, vocab_path, overwrite=True)
                    self._record(vocabulary, vocab_path, f"champion version {champion.version}")
                    return
            logger.info("Learning a new vocabulary: %s.", why)
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        pattern = os.path.join(artifact_utils.get_split_uri([examples], SPLIT), "*")
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
        self._record(vocabulary, vocab_path, "learned")

    @staticmethod
    def _record(vocabulary: types.Artifact, vocab_path: str, source: str) -> None:
        size = len(read_vocabulary(vocab_path))
        vocabulary.set_int_custom_property("size", size)
        vocabulary.set_string_custom_property(SOURCE_PROPERTY, source)
        logger.info("Wrote %d tokens to %s (%s).", size, vocab_path, source)


def _champion_vocabulary(champion: Champion, exec_properties: Dict[str, Any]) -> Tuple[Optional[str], str]:
    """(the champion's vocab.txt, "") when it was learned with these settings, else (None, why not)."""
    from components.serving import model_bundle

    manifest = champion.manifest
    settings = {
        "vocab.vocabulary_size": int(exec_properties[VOCABULARY_SIZE_KEY]),
        "vocab.lowercase": bool(exec_properties[LOWERCASE_KEY]),
        "vocab.reserved_tokens": tuple(json.loads(exec_properties[RESERVED_TOKENS_KEY])),
    }
    champion_settings = {
        "vocab.vocabulary_size": int(manifest.params.get("vocab.vocabulary_size", -1)),
        "vocab.lowercase": manifest.lowercase,
        "vocab.reserved_tokens": tuple(champion.vocabulary[: len(settings["vocab.reserved_tokens"])]),
    }
    changed = [key for key in settings if settings[key] != champion_settings[key]]
    if changed:
        return None, f"the champion's vocabulary was learned with other {', '.join(changed)}"
    return os.path.join(champion.bundle_dir, model_bundle.VOCAB_FILE), ""
