"""The Pusher: TFX's filesystem push of a blessed bundle, and MLflow's champion alias moved to it."""

import os

import pytest
from mlflow import MlflowClient
from tfx.dsl.components.base.base_executor import BaseExecutor
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import Channel, standard_artifacts

from components.pusher import executor
from components.pusher.component import Pusher
from components.tracking.text_model import CHAMPION_ALIAS, REGISTERED_MODEL


@pytest.fixture
def registry(tmp_path):
    """A tracking store with two registered versions of the model, 1 the champion."""
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("exp")
    client.create_registered_model(REGISTERED_MODEL)
    runs = []
    for _ in range(2):
        run = client.create_run(experiment)
        runs.append(run.info.run_id)
        client.create_model_version(REGISTERED_MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, "1")
    return tracking_uri, client, runs


def _push(tmp_path, tracking_uri, blessed: bool, version: str = "2", decided_against: str = "1"):
    """The Pusher on version `version`'s bundle, blessed (or not) against champion
    `decided_against`."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "Trainer" / "model")
    bundle = tmp_path / "Trainer" / "model" / "Format-Serving"
    (bundle / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "minigpt.keras", "vocab.txt", "minigpt_manifest.json", "variables/v.index"):
        (bundle / name).write_text(name)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("registered_version", version)
    blessing.set_string_custom_property("statistics_uri", "gs://b/root/StatisticsGen/statistics/9")
    blessing.set_string_custom_property("champion_version", decided_against)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed_model")
    destination = tmp_path / "serving"
    component = Pusher(
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        push_destination=str(destination),
        tracking_uri=tracking_uri,
    )
    context = BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"), pipeline_info=pipeline_pb2.PipelineInfo(id="p"))
    executor.Executor(context).Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, component.exec_properties
    )
    return pushed, destination


def test_a_blessed_model_is_pushed_and_becomes_the_champion(tmp_path, registry):
    tracking_uri, client, runs = registry
    pushed, destination = _push(tmp_path, tracking_uri, blessed=True)
    # TFX's layout: one folder per push, named by its Unix time, the whole bundle in it.
    (version_dir,) = os.listdir(destination)
    assert version_dir.isdigit()
    files = sorted(os.listdir(destination / version_dir))
    assert files == ["minigpt.keras", "minigpt_manifest.json", "saved_model.pb", "variables", "vocab.txt"]
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == str(destination / version_dir)
    assert pushed.get_string_custom_property("registered_version") == "2"
    # The alias follows the push; the model's run says where it went.
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 2
    tags = client.get_run(runs[1]).data.tags
    assert tags["pushed_to"] == str(destination / version_dir) and tags["pushed_as_version"] == "2"
    # Where its training data's statistics are: a later run's drift baseline.
    assert (
        client.get_model_version(REGISTERED_MODEL, "2").tags["statistics_uri"]
        == "gs://b/root/StatisticsGen/statistics/9"
    )


def test_a_model_that_is_not_blessed_is_neither_pushed_nor_promoted(tmp_path, registry):
    tracking_uri, client, runs = registry
    pushed, destination = _push(tmp_path, tracking_uri, blessed=False)
    assert not destination.exists()
    assert pushed.get_int_custom_property("pushed") == 0
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 1
    assert "pushed_to" not in client.get_run(runs[1]).data.tags


def test_a_blessing_against_a_champion_that_has_since_changed_pushes_nothing(tmp_path, registry):
    """Another run (or a person) moved the alias after this model was blessed against the
    old champion: promoting it now would replace a champion it was never compared with."""
    tracking_uri, client, runs = registry
    pushed, destination = _push(tmp_path, tracking_uri, blessed=True, decided_against="none")
    assert not destination.exists() and pushed.get_int_custom_property("pushed") == 0
    reason = pushed.get_string_custom_property("not_pushed_reason")
    assert reason == "the blessing was decided against champion none, and the champion is now 1"
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == 1


def test_a_promotion_that_fails_leaves_no_served_folder(tmp_path, registry, monkeypatch):
    tracking_uri, client, _ = registry

    def refuse(*args, **kwargs):
        raise ConnectionError("the tracking server went away")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    with pytest.raises(ConnectionError):
        _push(tmp_path, tracking_uri, blessed=True)
    assert os.listdir(tmp_path / "serving") == []  # TFX's copy removed: nothing served it
