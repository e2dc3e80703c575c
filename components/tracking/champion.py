"""The champion: the model MLflow's `champion` alias names, the one being served.

The alias is the one source of truth for which model is the champion: the Pusher moves
it, after copying a blessed model to the push destination, and nothing else does (a
person may, by hand: `MlflowClient().set_registered_model_alias("minigpt", "champion",
"3")`). The steps that compare with it or start from it look it up when they run, not
through a TFX input: an input resolved from the pipeline's own latest output would change
after every blessing and rerun everything, on data that did not change. So a step that
TFX serves from its cache keeps the champion it saw when it ran, and one whose inputs
changed (new data, new settings) sees the champion of now. VocabGen, DataCheck and the
Evaluator record the version they saw on their output (`VERSION_PROPERTY`), the Trainer
on its MLflow run (`warm_start`); the Pusher promotes a model only while the champion is
still the one its blessing was decided against.

The bundle (SavedModel, `.keras` model, vocabulary, manifest) is the one the Evaluator
logged with the registered text model; it is downloaded to a local folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile
from typing import TYPE_CHECKING, Iterator, List, Optional

import yaml

from components.tracking.text_model import BUNDLE_ARTIFACT, CHAMPION_ALIAS, REGISTERED_MODEL

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.serving.model_bundle import Manifest

# The model version tag the Pusher sets: the statistics of the data the model was trained
# on (a later run's drift baseline).
STATISTICS_URI_TAG = "statistics_uri"
# On the outputs of the steps that looked the champion up (the blessing too): its
# version, or NO_CHAMPION.
VERSION_PROPERTY = "champion_version"
NO_CHAMPION = "none"


@dataclasses.dataclass(frozen=True)
class Champion:
    version: str
    # A local folder holding the champion's bundle (`components.serving.model_bundle`).
    bundle_dir: str
    # Where the statistics of its training data are (None: not recorded).
    statistics_uri: Optional[str]

    # Read once, by whichever check asks first (the bundle's modules import TensorFlow).
    @functools.cached_property
    def vocabulary(self) -> List[str]:
        """The champion's tokens, in id order: the vocabulary its ids mean."""
        from components.serving import model_bundle  # pylint: disable=import-outside-toplevel

        return model_bundle.read_bundle_vocabulary(self.bundle_dir)

    @functools.cached_property
    def manifest(self) -> "Manifest":
        """The champion's manifest: its model sizes and the settings it was trained with."""
        from components.serving import model_bundle  # pylint: disable=import-outside-toplevel

        return model_bundle.read_manifest(self.bundle_dir)


def champion_version(client: "MlflowClient") -> Optional[str]:
    """The version the alias names now; None when the registered model or the alias does
    not exist yet (a first run)."""
    from mlflow.exceptions import MlflowException  # pylint: disable=import-outside-toplevel

    try:
        aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    return str(aliases[CHAMPION_ALIAS]) if CHAMPION_ALIAS in aliases else None


@contextlib.contextmanager
def current_champion(tracking_uri: str) -> Iterator[Optional[Champion]]:
    """The champion of now, its bundle in a temporary folder for the `with` block; None
    when the registered model or its alias does not exist yet (a first run)."""
    from mlflow import MlflowClient  # pylint: disable=import-outside-toplevel
    from mlflow.artifacts import download_artifacts  # pylint: disable=import-outside-toplevel

    client = MlflowClient(tracking_uri)
    number = champion_version(client)
    if number is None:
        yield None
        return
    version = client.get_model_version(REGISTERED_MODEL, number)
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        model_dir = download_artifacts(f"models:/{REGISTERED_MODEL}/{version.version}", dst_path=tmp)
        with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as f:
            artifacts = yaml.safe_load(f)["flavors"]["python_function"]["artifacts"]
        bundle_dir = os.path.join(model_dir, artifacts[BUNDLE_ARTIFACT]["path"])
        yield Champion(str(version.version), bundle_dir, version.tags.get(STATISTICS_URI_TAG))
