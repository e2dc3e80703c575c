"""The data validation steps between Tokenize and the Trainer.

TFX's StatisticsGen, SchemaGen (or ImportSchemaGen for `data.schema_file`) and
ExampleValidator over the token ids, then DataCheck: the checks TFDV cannot express and
the verdict that stops a run before training.
"""

from __future__ import annotations

from typing import List, NamedTuple

from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode

from components.data_check.component import DataCheck
from pipeline.code_digest import code_digest
from pipeline.config import PipelineConfig

# DataCheck's executor, whose code digest is in its cache key (`components.runtime.cache_key`).
DATA_CHECK_MODULES = ("components.data_check.executor",)
# The schema is inferred from the train split only, so that ExampleValidator checks the
# eval and test splits against what training saw.
SCHEMA_EXCLUDED_SPLITS = ["eval", "test"]


class DataValidation(NamedTuple):
    """The validation components, and what the rest of the pipeline takes from them."""

    # In data-flow order.
    components: List[BaseNode]
    # What the Trainer waits for (`trainer.add_upstream_node(gate)`): upstream, not an
    # input, so the checks' thresholds stay out of the Trainer's cache key.
    gate: DataCheck
    # The statistics of this run's data (named on the model's blessing) and its anomalies.
    statistics: tfx.dsl.Channel
    anomalies: tfx.dsl.Channel


def data_validation(
    cfg: PipelineConfig,
    example_gen: BaseNode,
    tokenize: BaseNode,
    vocabulary: tfx.dsl.Channel,
) -> DataValidation:
    """Builds the validation components.

    Args:
      cfg: a validated PipelineConfig.
      example_gen: TextExampleGen (its text Examples: the paragraph checks).
      tokenize: Tokenize (its token-id Examples: the statistics and the counts).
      vocabulary: this run's Vocabulary channel (VocabGen's).

    Returns:
      A DataValidation.
    """
    token_ids = tokenize.outputs["token_ids"]
    # TFDV's statistics of each split's token ids: sequence lengths (value counts), the
    # id distribution (histograms, quantiles).
    statistics_gen = tfx.components.StatisticsGen(examples=token_ids)
    if cfg.data.schema_file:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=cfg.data.schema_file)
    else:
        # No fixed shape: a train split whose every line fills model.seq_len would infer one,
        # and an eval line shorter than that would be an anomaly that stops the run.
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"],
            infer_feature_shape=False,
            exclude_splits=SCHEMA_EXCLUDED_SPLITS,
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_check = DataCheck(
        examples=example_gen.outputs["examples"],
        token_ids=token_ids,
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        thresholds=cfg.data.checks,
        seq_len=cfg.model.seq_len,
        vocabulary=vocabulary,
        code_digest=code_digest(DATA_CHECK_MODULES),
    )
    return DataValidation(
        [statistics_gen, schema_gen, example_validator, data_check],
        data_check,
        statistics_gen.outputs["statistics"],
        example_validator.outputs["anomalies"],
    )
