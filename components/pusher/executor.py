"""Pusher executor: TFX's filesystem push, then MLflow's `champion` alias moved to the model.

TFX's Pusher copies a blessed model's serving directory (here the whole bundle:
SavedModel, `.keras` model, vocabulary, manifest) to `<push destination>/<unix time>`,
the layout TensorFlow Serving watches, and does nothing for a model that is not blessed.
Before it, this executor checks that the champion is still the one the blessing was
decided against (another run, or a person, may have moved the alias since): if not, the
model is not pushed, and says why. After the push it tags the version the Evaluator
registered for the model (the blessing records it) with where its training data's
statistics are, then points the registered model's `champion` alias at it, removing the
pushed folder if that fails: `models:/minigpt@champion` is always the model last
pushed, and the one later runs compare with (`components.tracking.champion`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from mlflow import MlflowClient
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.components.util import model_utils
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components.evaluator import blessing
from components.tracking.champion import NO_CHAMPION, STATISTICS_URI_TAG, VERSION_PROPERTY, champion_version
from components.tracking.text_model import CHAMPION_ALIAS, REGISTERED_MODEL

logger = logging.getLogger(__name__)

TRACKING_URI_KEY = "tracking_uri"
# On the MLflow run of the pushed model: where it went, and the version that became champion.
PUSHED_TO_TAG = "pushed_to"
PUSHED_AS_TAG = "pushed_as_version"
# On a PushedModel that a stale blessing kept from being pushed: why.
NOT_PUSHED_REASON = "not_pushed_reason"


class Executor(tfx_pusher.Executor):
    """TFX's Pusher executor between two MLflow steps: before it, that the champion is
    still the one the blessing was decided against; after it, the alias."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        model_blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        client = MlflowClient(tracking_uri=custom_config[TRACKING_URI_KEY])
        version = model_blessing.get_string_custom_property(blessing.REGISTERED_VERSION)
        if model_utils.is_model_blessed(model_blessing):
            if not version:
                raise RuntimeError(f"the blessing at {model_blessing.uri} names no registered version to promote")
            stale = _stale(client, model_blessing)
            if stale:  # another run (or a person) moved the alias since this blessing
                logger.warning("Not pushed: %s.", stale)
                self._MarkNotPushed(pushed)
                pushed.set_string_custom_property(NOT_PUSHED_REASON, stale)
                return
        super().Do(input_dict, output_dict, exec_properties)
        if pushed.get_int_custom_property("pushed") != 1:
            return
        destination = pushed.get_string_custom_property("pushed_destination")
        try:
            # What a later run compares its data with, on the version, before the alias moves.
            statistics_uri = model_blessing.get_string_custom_property(blessing.STATISTICS_URI)
            if statistics_uri:
                client.set_model_version_tag(REGISTERED_MODEL, version, STATISTICS_URI_TAG, statistics_uri)
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, version)
        except Exception:
            # A served folder whose model MLflow does not call the champion must not stay.
            fileio.rmtree(destination)
            raise
        run_id = client.get_model_version(REGISTERED_MODEL, version).run_id
        client.set_tag(run_id, PUSHED_TO_TAG, destination)
        client.set_tag(run_id, PUSHED_AS_TAG, version)
        pushed.set_string_custom_property(blessing.REGISTERED_VERSION, version)
        logger.info("Pushed to %s; %s@%s is version %s.", destination, REGISTERED_MODEL, CHAMPION_ALIAS, version)


def _stale(client: MlflowClient, model_blessing: types.Artifact) -> Optional[str]:
    """Why the blessing no longer holds (the champion it beat is not the champion now), or None."""
    decided_against = model_blessing.get_string_custom_property(VERSION_PROPERTY) or NO_CHAMPION
    now = champion_version(client) or NO_CHAMPION
    if now == decided_against:
        return None
    return f"the blessing was decided against champion {decided_against}, and the champion is now {now}"
