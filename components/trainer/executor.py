"""Trainer executors: TFX's GenericExecutor plus the vocabulary, the run id and MLflow,
and a launcher that runs the same executor as a Vertex AI custom training job.

The stock `FnArgs` has no slot for a vocabulary artifact, the pipeline run id (which
MLflow needs to find this pipeline run's MLflow run), the Examples' line counts or the
MLflow tracking settings, so they are added to `custom_config` here, at run time, where
they do not become part of the cache key.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer import fn_args_utils
from tfx.dsl.components.base import base_executor
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components.data.artifact_types import Vocabulary
from components.data.formats import LINE_COUNTERS, SOURCE_PROPERTIES, TOKEN_COUNTERS
from components.runtime.pipeline_run import pipeline_run
from components.tracking.mlflow_runs import tracking_from_environment
from components.trainer import keys

VOCABULARY_KEY = "vocabulary"


def runtime_config(
    input_dict: Dict[str, List[types.Artifact]], context: base_executor.BaseExecutor.Context
) -> Dict[str, Any]:
    """What `run_fn` needs beyond the cache-keyed settings, known only at run time."""
    vocab_dir = artifact_utils.get_single_uri(input_dict[VOCABULARY_KEY])
    examples = artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY])
    pipeline_name, pipeline_run_id = pipeline_run(context)
    return {
        keys.VOCABULARY_PATH: os.path.join(vocab_dir, Vocabulary.FILE_NAME),
        keys.PIPELINE_RUN_ID: pipeline_run_id,
        keys.PIPELINE_NAME: pipeline_name,
        keys.MLFLOW: tracking_from_environment(),
        # Each split's source, digest and counts: the MLflow run's datasets.
        keys.DATASETS: datasets(examples),
    }


class Executor(trainer_executor.GenericExecutor):
    def _GetFnArgs(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> fn_args_utils.FnArgs:
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        # On Vertex training the launcher filled these in, where the pipeline's context is.
        if keys.PIPELINE_RUN_ID not in fn_args.custom_config:
            fn_args.custom_config.update(runtime_config(input_dict, self._context))
        return fn_args


class VertexTrainingExecutor(vertex_executor.GenericExecutor):
    """Submits `Executor` as a Vertex AI custom job (TFX's google_cloud_ai_platform
    extension) and waits for it; the job's worker pool comes from `custom_config`."""

    def _GetExecutorClass(self):
        return Executor

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        custom_config = json_utils.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
        custom_config.update(runtime_config(input_dict, self._context))
        exec_properties = {
            **exec_properties,
            standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config),
        }
        return super().Do(input_dict, output_dict, exec_properties)


def datasets(examples: types.Artifact) -> List[Dict[str, Any]]:
    """Each split's source, sha256, line-length histogram and profile (its line and token
    counts, the share of [UNK] tokens and of sequences truncated at seq_len), from the
    Examples artifact."""
    props = examples.mlmd_artifact.custom_properties
    found = []
    for split in artifact_utils.decode_split_names(examples.split_names):
        profile = {
            counter: examples.get_int_custom_property(f"{split}_{counter}")
            for counter in LINE_COUNTERS + TOKEN_COUNTERS
            if f"{split}_{counter}" in props
        }
        if profile.get("tokens"):
            profile["unk_share"] = profile["unk_tokens"] / profile["tokens"]
        if profile.get("sequences"):
            profile["truncated_share"] = profile["truncated_sequences"] / profile["sequences"]
        source = {name: examples.get_string_custom_property(f"{split}_{name}") for name in SOURCE_PROPERTIES}
        source["length_histogram"] = json.loads(source["length_histogram"] or "{}")
        found.append({"split": split, **source, "profile": profile})
    return found
