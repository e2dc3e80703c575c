"""DataCheck: a Beam component that checks the data before the Trainer, after TFDV's
StatisticsGen, SchemaGen and ExampleValidator."""

from __future__ import annotations

import dataclasses
import json

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data.artifact_types import DataChecks, Vocabulary
from components.data_check import executor
from components.data_check.config import DataChecksConfig
from components.runtime.cache_key import CODE_DIGEST_KEY, CODE_DIGEST_PARAMETER


class DataCheckSpec(ComponentSpec):
    PARAMETERS = {
        executor.THRESHOLDS_KEY: ExecutionParameter(type=str),
        executor.SEQ_LEN_KEY: ExecutionParameter(type=int),
        CODE_DIGEST_KEY: CODE_DIGEST_PARAMETER,
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.TOKEN_IDS_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
    }
    OUTPUTS = {executor.RESULT_KEY: ChannelParameter(type=DataChecks)}


class DataCheck(base_beam_component.BaseBeamComponent):
    """Checks each split's kept-line share, [UNK] share and mean sequence length, the
    train split's duplicate paragraphs, the paragraphs other splits share with it,
    ExampleValidator's anomalies and (given a champion with this vocabulary) the drift
    of the token ids from its training data.

    Every check's value goes in the result's `checks.json`; a failed check stops the run
    in one line, before the Trainer.
    """

    SPEC_CLASS = DataCheckSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        token_ids: types.BaseChannel,
        statistics: types.BaseChannel,
        schema: types.BaseChannel,
        anomalies: types.BaseChannel,
        thresholds: DataChecksConfig,
        seq_len: int,
        vocabulary: types.BaseChannel,
        code_digest: str = "",
    ):
        """Builds the component.

        Args:
          examples: text Examples (tf.Example{text}) from TextExampleGen.
          token_ids: token-id Examples from Tokenize, with its and TextExampleGen's counts.
          statistics: StatisticsGen's statistics of `token_ids`.
          schema: the Schema the statistics were validated against.
          anomalies: ExampleValidator's anomalies of `statistics` against `schema`.
          thresholds: the config's `data.checks`.
          seq_len: int, the model's sequence length (the mean-tokens check's scale).
          vocabulary: this run's Vocabulary (the drift is measured against a champion
            with the same one, which the executor looks up: `components.tracking.champion`).
          code_digest: the digest of the executor's code (`components.runtime.cache_key`).
        """
        spec = DataCheckSpec(
            examples=examples,
            token_ids=token_ids,
            statistics=statistics,
            schema=schema,
            anomalies=anomalies,
            vocabulary=vocabulary,
            thresholds=json.dumps(dataclasses.asdict(thresholds), sort_keys=True),
            seq_len=seq_len,
            code_digest=code_digest,
            result=types.Channel(type=DataChecks),
        )
        super().__init__(spec=spec)
