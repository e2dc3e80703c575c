"""Pusher: TFX's component with an executor that also moves MLflow's `champion` alias."""

from __future__ import annotations

from tfx import types
from tfx.components import Pusher as TfxPusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2

from components.pusher import executor


class Pusher(TfxPusher):
    """Copies a blessed model's bundle to `push_destination` and makes it MLflow's champion.

    A model that is not blessed is neither copied nor promoted (its PushedModel artifact
    says `pushed: 0`); it stays registered as the newest version.
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: str,
        tracking_uri: str,
    ):
        """Builds the component.

        Args:
          model: the Trainer's Model.
          model_blessing: the Evaluator's ModelBlessing of that model.
          push_destination: a local folder or a gs:// one; each push is a subfolder.
          tracking_uri: the MLflow tracking server of the registered model.
        """
        super().__init__(
            model=model,
            model_blessing=model_blessing,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=push_destination)
            ),
            custom_config={executor.TRACKING_URI_KEY: tracking_uri},
        )
