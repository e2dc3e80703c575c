"""Evaluator: perplexity and per-decoder samples of the trained mini-GPT."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data.artifact_types import DataChecks
from components.evaluator import executor
from components.runtime.cache_key import CODE_DIGEST_KEY, CODE_DIGEST_PARAMETER


class EvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        executor.EVAL_CONFIG_KEY: ExecutionParameter(type=str),
        executor.MLFLOW_CONFIG_KEY: ExecutionParameter(type=str),
        executor.PARAMS_KEY: ExecutionParameter(type=str),
        CODE_DIGEST_KEY: CODE_DIGEST_PARAMETER,
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        # What the model was trained on, named on its blessing (and by the Pusher on its
        # MLflow version): a later run measures its data's drift from these statistics.
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        # The data validation's outputs, logged to the run beside the model's results.
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
        executor.DATA_CHECKS_KEY: ChannelParameter(type=DataChecks, optional=True),
    }
    OUTPUTS = {
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Evaluator(base_component.BaseComponent):
    """Computes token-weighted perplexity, samples text with every configured decoder, and
    blesses the model if it is no worse than the champion of the moment
    (`components.evaluator.blessing`, `components.tracking.champion`).

    Logs all three to the pipeline run's MLflow run, registers the model, and ends that
    run FINISHED.
    """

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: Dict[str, Any],
        mlflow_config: Dict[str, Any],
        params: Dict[str, Any],
        statistics: Optional[types.BaseChannel] = None,
        anomalies: Optional[types.BaseChannel] = None,
        data_checks: Optional[types.BaseChannel] = None,
        code_digest: str = "",
    ):
        """Builds the component.

        Args:
          examples: token-id Examples (from Tokenize) with an `eval` split.
          model: the Trainer's Model.
          eval_config: num_tokens_to_generate, batch_size, max_batches, decoders
            (name -> sampler parameters) and seed.
          mlflow_config: tracking_uri and experiment_name.
          params: flat dict of settings to record as MLflow params.
          statistics: StatisticsGen's statistics of the data the model was trained on.
          anomalies: ExampleValidator's anomalies of that data.
          data_checks: DataCheck's results on it.
          code_digest: the digest of the executor's code (`components.runtime.cache_key`).

        Raises:
          ValueError: if no decoder is configured.
        """
        if not eval_config.get("decoders"):
            raise ValueError("eval_config must name at least one decoder.")
        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            statistics=statistics,
            anomalies=anomalies,
            data_checks=data_checks,
            eval_config=json.dumps(eval_config, sort_keys=True),
            mlflow_config=json.dumps(mlflow_config, sort_keys=True),
            params=json.dumps(params, sort_keys=True, default=str),
            code_digest=code_digest,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
