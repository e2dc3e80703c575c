"""Trainer: TFX's Trainer with one more input, the learned vocabulary."""

from __future__ import annotations

from typing import Any, Dict

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.artifact_types import Vocabulary
from components.trainer import executor


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
    }


class Trainer(base_component.BaseComponent):
    """Runs `run_fn` from `module_file` with the Examples and the vocabulary.

    Outputs are TFX's: `model` (serving SavedModel under Format-Serving, plus the
    `.keras` model and the vocabulary) and `model_run`.
    """

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocabulary: types.BaseChannel,
        module_file: str,
        custom_config: Dict[str, Any],
    ):
        """Builds the component.

        Args:
          examples: token-id Examples (from Tokenize) with `train` and `eval` splits.
          vocabulary: the Vocabulary learned by VocabGen.
          module_file: path of the module that defines `run_fn(fn_args)`.
          custom_config: JSON-serialisable settings handed to `run_fn`.
        """
        spec = TrainerSpec(
            examples=examples,
            vocabulary=vocabulary,
            train_args=trainer_pb2.TrainArgs(),
            eval_args=trainer_pb2.EvalArgs(),
            module_file=module_file,
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)
