"""Warm start: a new fit begins from the champion's weights, when they fit this model.

A scheduled run on new data can start where the served model is rather than from
random weights (`train.warm_start: champion`): the champion of the moment the fit
starts (`components.tracking.champion`). The champion's weights fit only a model
of the same sizes over the same vocabulary (the embedding and the logits are indexed by
token id); otherwise the fit starts from scratch and says why, in one line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

import keras

from components.minigpt.model import GPTConfig
from components.serving import model_bundle
from components.tracking.champion import Champion
from components.tracking.text_model import REGISTERED_MODEL

# On the MLflow run: what the fit started from, in words.
TAG = "warm_start"


@dataclasses.dataclass(frozen=True)
class WarmStart:
    # The champion whose weights were loaded (`models:/minigpt/<version>`); None: from scratch.
    champion: Optional[str]
    # What happened, in words (logged, and tagged on the MLflow run).
    reason: str


def load_champion_weights(
    model: keras.Model, champion: Optional[Champion], vocab: List[str], gpt: GPTConfig
) -> WarmStart:
    """Sets `model`'s weights to the champion's (None: there is none yet) when its
    vocabulary and sizes are this model's."""
    if champion is None:
        return WarmStart(None, "no champion yet: trained from scratch")
    manifest = champion.manifest
    if champion.vocabulary != vocab:
        return WarmStart(None, "the champion's vocabulary differs from this run's: trained from scratch")
    if manifest.model != gpt:
        changed = [
            f"{f.name} {getattr(manifest.model, f.name)} -> {getattr(gpt, f.name)}"
            for f in dataclasses.fields(gpt)
            if getattr(manifest.model, f.name) != getattr(gpt, f.name)
        ]
        return WarmStart(None, f"the champion's sizes differ ({', '.join(changed)}): trained from scratch")
    weights = keras.saving.load_model(os.path.join(champion.bundle_dir, model_bundle.KERAS_MODEL_FILE), compile=False)
    model.set_weights(weights.get_weights())
    name = f"models:/{REGISTERED_MODEL}/{champion.version}"
    return WarmStart(name, f"from the champion's weights ({name})")
