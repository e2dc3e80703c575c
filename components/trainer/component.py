"""Trainer: TFX's Trainer with one more input, the learned vocabulary."""

from __future__ import annotations

from typing import Any, Dict

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.data.artifact_types import Vocabulary
from components.trainer import executor

# Imported by module path, not loaded from a file: a path of the compiling machine would
# mean nothing inside a Kubeflow/Vertex container, where this package is installed.
RUN_FN = "components.trainer.trainer_module.run_fn"


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
    }


class Trainer(base_component.BaseComponent):
    """Runs `run_fn` with the Examples and the vocabulary, here or on Vertex AI training.

    Outputs are TFX's: `model` (serving SavedModel under Format-Serving, plus the
    `.keras` model and the vocabulary) and `model_run`.
    """

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocabulary: types.BaseChannel,
        custom_config: Dict[str, Any],
        run_fn: str = RUN_FN,
        on_vertex_training: bool = False,
    ):
        """Builds the component.

        Args:
          examples: token-id Examples (from Tokenize) with `train` and `eval` splits.
          vocabulary: the Vocabulary learned by VocabGen.
          custom_config: JSON-serialisable settings handed to `run_fn`; with
            `on_vertex_training`, also TFX's Vertex training keys (see executor.py).
          run_fn: dotted path of the training function `run_fn(fn_args)`.
          on_vertex_training: run `run_fn` in a Vertex AI custom job rather than here.
        """
        spec = TrainerSpec(
            examples=examples,
            vocabulary=vocabulary,
            train_args=trainer_pb2.TrainArgs(),
            eval_args=trainer_pb2.EvalArgs(),
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        custom_executor = executor.VertexTrainingExecutor if on_vertex_training else None
        super().__init__(
            spec=spec,
            custom_executor_spec=custom_executor and executor_spec.ExecutorClassSpec(custom_executor),
        )
