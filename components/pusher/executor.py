"""Pusher executor: TFX's filesystem push, then MLflow's `champion` alias moved to the model.

TFX's Pusher copies a blessed model's serving directory (here the whole bundle:
SavedModel, `.keras` model, vocabulary, manifest) to `<push destination>/<unix time>`,
the layout TensorFlow Serving watches, and does nothing for a model that is not blessed.
After a push, this executor tags the version the Evaluator registered for the model
(the blessing records it) with where its training data's statistics are, then points
the registered model's `champion` alias at it: `models:/minigpt@champion` is always the
model last pushed, and the one later runs compare with (`components.tracking.champion`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from mlflow import MlflowClient
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components.evaluator import blessing
from components.tracking.champion import STATISTICS_URI_TAG
from components.tracking.text_model import CHAMPION_ALIAS, REGISTERED_MODEL

logger = logging.getLogger(__name__)

TRACKING_URI_KEY = "tracking_uri"
# On the MLflow run of the pushed model.
PUSHED_TO_TAG = "pushed_to"
CHAMPION_TAG = "champion_version"


class Executor(tfx_pusher.Executor):
    """TFX's Pusher executor, then the alias (only when TFX pushed)."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if pushed.get_int_custom_property("pushed") != 1:
            return
        model_blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        version = model_blessing.get_string_custom_property(blessing.REGISTERED_VERSION)
        if not version:
            raise RuntimeError(f"the blessing at {model_blessing.uri} names no registered version to make the champion")
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        client = MlflowClient(tracking_uri=custom_config[TRACKING_URI_KEY])
        # What a later run compares its data with, on the version, before the alias moves.
        statistics_uri = model_blessing.get_string_custom_property(blessing.STATISTICS_URI)
        if statistics_uri:
            client.set_model_version_tag(REGISTERED_MODEL, version, STATISTICS_URI_TAG, statistics_uri)
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, version)
        run_id = client.get_model_version(REGISTERED_MODEL, version).run_id
        destination = pushed.get_string_custom_property("pushed_destination")
        client.set_tag(run_id, PUSHED_TO_TAG, destination)
        client.set_tag(run_id, CHAMPION_TAG, version)
        pushed.set_string_custom_property(blessing.REGISTERED_VERSION, version)
        logger.info("Pushed to %s; %s@%s is version %s.", destination, REGISTERED_MODEL, CHAMPION_ALIAS, version)
