"""DataCheck executor: the checks TFDV cannot express, and the verdict on all of them.

The paragraph counts (duplicates within a split, paragraphs shared with the train split)
are a Beam job over the text Examples, so they run where the other Beam steps do
(Dataflow included); the rest are read from what earlier steps recorded: the line and
token counts on the token-id Examples, ExampleValidator's anomalies, and the statistics
of this run and of the champion's training data for the drift. Every check gates the run,
the first one included: only the drift needs a champion to compare with.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from tensorflow_data_validation.utils import anomalies_util
from tfx import types
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE_NAME
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.data.artifact_types import DataChecks, Vocabulary, read_vocabulary
from components.data.formats import LINE_COUNTERS, TOKEN_COUNTERS, example_text
from components.data.paragraphs import DUPLICATE_COUNTER, LEAKED_COUNTER, CountSharedParagraphs
from components.data_check import checks
from components.data_check.config import DataChecksConfig
from components.data_check.drift import load_split_statistics, token_id_divergence
from components.runtime.errors import InputDataError
from components.tracking.champion import NO_CHAMPION, VERSION_PROPERTY, Champion, current_champion
from components.tracking.mlflow_runs import tracking_from_environment

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
TOKEN_IDS_KEY = "token_ids"
STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
ANOMALIES_KEY = "anomalies"
VOCABULARY_KEY = "vocabulary"
RESULT_KEY = "result"
THRESHOLDS_KEY = "thresholds"
SEQ_LEN_KEY = "seq_len"
METRICS_NAMESPACE = "DataCheck"


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs every check, writes their summary, and stops the run on a failure."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes `checks.json` into the result artifact.

        Args:
          input_dict: `examples` (TextExampleGen's text Examples), `token_ids` (Tokenize's,
            with the line and token counts), `statistics` (StatisticsGen's, of the token
            ids), `schema`, `anomalies` (ExampleValidator's) and `vocabulary` (this run's:
            the drift is measured only against a champion with the same one).
          output_dict: `result`: the DataChecks artifact.
          exec_properties: `thresholds` (JSON of the config's `data.checks`) and
            `seq_len` (the model's sequence length).

        Raises:
          InputDataError: a check failed, naming the check, its value and its threshold.
        """
        thresholds = DataChecksConfig(**json.loads(exec_properties[THRESHOLDS_KEY]))
        token_ids = artifact_utils.get_single_instance(input_dict[TOKEN_IDS_KEY])
        splits = artifact_utils.decode_split_names(token_ids.split_names)
        found = [
            check
            for split in splits
            for check in checks.split_checks(
                split, _split_counts(token_ids, split), int(exec_properties[SEQ_LEN_KEY]), thresholds
            )
        ]
        shared = self._count_shared_paragraphs(artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]), splits)
        sequences = {split: _split_counts(token_ids, split).get("sequences", 0) for split in splits}
        found += checks.paragraph_checks(
            sequences,
            {split: shared.get(f"{split}_{DUPLICATE_COUNTER}", 0) for split in splits},
            {split: shared.get(f"{split}_{LEAKED_COUNTER}", 0) for split in splits},
            thresholds,
        )
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        found += [
            checks.schema_check(split, _schema_anomalies(anomalies, split))
            for split in artifact_utils.decode_split_names(anomalies.split_names)
        ]
        result = artifact_utils.get_single_instance(output_dict[RESULT_KEY])
        with current_champion(tracking_from_environment()["tracking_uri"]) as champion:
            result.set_string_custom_property(VERSION_PROPERTY, champion.version if champion else NO_CHAMPION)
            drift = _drift(champion, input_dict, thresholds) if champion else None
        found += [drift] if drift else []
        _write_summary(result, found)
        failed = [check for check in found if not check.passed]
        for check in failed:
            logger.warning("%s", check.message())
        if failed:
            others = f" ({len(failed) - 1} more failed: {', '.join(c.name for c in failed[1:])})" if failed[1:] else ""
            raise InputDataError(failed[0].message() + others)

    def _count_shared_paragraphs(self, examples: types.Artifact, splits: List[str]) -> Dict[str, int]:
        """Beam counters `<split>_duplicate_paragraphs` and `<split>_leaked_paragraphs`."""
        with self._make_beam_pipeline() as pipeline:
            texts = tuple(
                pipeline
                | f"Read[{split}]"
                >> beam.io.ReadFromTFRecord(
                    os.path.join(artifact_utils.get_split_uri([examples], split), "*"),
                    compression_type=beam.io.filesystem.CompressionTypes.GZIP,
                )
                | f"Text[{split}]" >> beam.Map(example_text)
                for split in splits
            )
            _ = texts | "CountSharedParagraphs" >> CountSharedParagraphs(tuple(splits), METRICS_NAMESPACE)
        query = pipeline.result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
        return {counter.key.metric.name: counter.committed for counter in query["counters"]}


def _split_counts(artifact: types.Artifact, split: str) -> Dict[str, int]:
    """The artifact's `<split>_<counter>` counts (TextExampleGen's and Tokenize's), by counter."""
    return {name: _count(artifact, f"{split}_{name}") for name in (*LINE_COUNTERS, *TOKEN_COUNTERS)}


def _count(artifact: types.Artifact, key: str) -> int:
    """An integer custom property however it arrived: a local run stores an int, TFX's
    Kubeflow/Vertex entrypoint hands it over as a JSON number (a float in a struct), which
    `get_int_custom_property` reads as 0."""
    value = artifact.get_json_value_custom_property(key)
    return int(value) if value is not None else artifact.get_int_custom_property(key)


def _schema_anomalies(anomalies: types.Artifact, split: str) -> Mapping[str, str]:
    """ExampleValidator's anomalies of one split: feature (or `dataset`) -> description."""
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE_NAME)
    found = anomalies_util.load_anomalies_binary(path)
    described = {feature: info.short_description or info.description for feature, info in found.anomaly_info.items()}
    if found.HasField("dataset_anomaly_info"):
        described["dataset"] = found.dataset_anomaly_info.short_description
    return described


def _drift(champion: Champion, input_dict: Dict[str, List[types.Artifact]], thresholds: DataChecksConfig):
    """The drift check against the champion's training statistics; None (with a warning)
    when they are not recorded or its vocabulary is not this run's."""
    if not champion.statistics_uri:
        logger.warning("Champion version %s has no recorded statistics: drift not checked.", champion.version)
        return None
    vocabulary = os.path.join(artifact_utils.get_single_uri(input_dict[VOCABULARY_KEY]), Vocabulary.FILE_NAME)
    if champion.vocabulary != read_vocabulary(vocabulary):
        logger.warning("Champion version %s has another vocabulary: token-id drift not checked.", champion.version)
        return None
    statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
    schema_uri = artifact_utils.get_single_uri(input_dict[SCHEMA_KEY])
    schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
    try:
        previous = load_split_statistics(champion.statistics_uri)
    except (OSError, tf.errors.OpError) as e:  # another machine's path, a cleaned-up root
        logger.warning("Champion version %s's statistics cannot be read (%s): drift not checked.", champion.version, e)
        return None
    return checks.drift_check(token_id_divergence(load_split_statistics(statistics.uri), previous, schema), thresholds)


def _write_summary(result: types.Artifact, found: List[checks.Check]) -> None:
    """`checks.json`: every check, its value, threshold and verdict."""
    fileio.makedirs(result.uri)
    with fileio.open(os.path.join(result.uri, DataChecks.FILE_NAME), "w") as f:
        f.write(json.dumps({"checks": [check.to_dict() for check in found]}, indent=1))
    result.set_int_custom_property("failed_checks", sum(not check.passed for check in found))
