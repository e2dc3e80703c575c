"""The trained-model directory: serving SavedModel + `.keras` model + vocab + manifest.

The Trainer writes it into TFX's `serving_model_dir`; the Evaluator (and later a
serving or decoding benchmark) rebuilds everything from it without guessing settings.
Paths may be local or remote (gs://): files go through TFX's fileio.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Tuple

import keras
from tfx.dsl.io import fileio

from components.data.artifact_types import read_vocabulary
from components.minigpt.model import GPTConfig

KERAS_MODEL_FILE = "minigpt.keras"
VOCAB_FILE = "vocab.txt"
MANIFEST_FILE = "minigpt_manifest.json"


@dataclasses.dataclass(frozen=True)
class Manifest:
    model: GPTConfig
    lowercase: bool
    # The MLflow run that trained this model (a cached rerun points back at it).
    mlflow_run_id: str
    pipeline_run_id: str
    # The settings that trained this model, as logged to MLflow (flat `section.key`
    # names): an Evaluator that reruns on a cached model records them in its own run.
    params: Dict[str, Any]


def export(
    serving_model_dir: str, model: keras.Model, manifest: Manifest, vocab_path: str, generate_tokens: int = 80
) -> None:
    """Writes the SavedModel for serving, then the files the Evaluator loads.

    The SavedModel has two endpoints: `serve` (token ids -> logits, what `model.export`
    writes) and `generate` (prompts -> text, greedy, up to `generate_tokens` tokens).
    """
    from keras.src.export.saved_model import get_input_signature  # pylint: disable=import-outside-toplevel

    from components.minigpt.tokenizer import TextCodec  # pylint: disable=import-outside-toplevel
    from components.serving.signature import add_generate_endpoint  # pylint: disable=import-outside-toplevel

    archive = keras.export.ExportArchive()
    archive.track_and_add_endpoint("serve", model, get_input_signature(model))
    codec = TextCodec(read_vocabulary(vocab_path), manifest.model.seq_len, manifest.lowercase)
    add_generate_endpoint(archive, model, codec, generate_tokens)
    archive.write_out(serving_model_dir, verbose=False)
    model.save(os.path.join(serving_model_dir, KERAS_MODEL_FILE))
    fileio.copy(vocab_path, os.path.join(serving_model_dir, VOCAB_FILE), overwrite=True)
    with fileio.open(os.path.join(serving_model_dir, MANIFEST_FILE), "w") as f:
        f.write(json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=True))


def read_manifest(serving_model_dir: str) -> Manifest:
    """The manifest of a directory written by `export` (without loading the model)."""
    with fileio.open(os.path.join(serving_model_dir, MANIFEST_FILE), "r") as f:
        raw = json.loads(f.read())
    return Manifest(**{**raw, "model": GPTConfig(**raw["model"])})


def load(serving_model_dir: str) -> Tuple[keras.Model, Manifest, List[str]]:
    """(model, manifest, vocabulary) from a directory written by `export`."""
    manifest = read_manifest(serving_model_dir)
    model = keras.saving.load_model(os.path.join(serving_model_dir, KERAS_MODEL_FILE), compile=False)
    return model, manifest, read_bundle_vocabulary(serving_model_dir)


def read_bundle_vocabulary(serving_model_dir: str) -> List[str]:
    """The bundle's tokens, in id order."""
    return read_vocabulary(os.path.join(serving_model_dir, VOCAB_FILE))
