"""TFX components of the minigpt pipeline, one per sub-package.

`components.minigpt` holds the model and decoding code; it imports only Keras and
keras_hub so it also runs on the JAX backend, without TFX.
"""

# Artifact types this project adds (`data.artifact_types`), by their importable names.
ARTIFACT_TYPES = ("Vocabulary", "DataChecks")


def __getattr__(name: str):
    """`components.Vocabulary` (and the other ARTIFACT_TYPES), the importable names of the
    project's artifact types, imported on first use: TFX stays out of `import components`."""
    if name in ARTIFACT_TYPES:
        from components.data import artifact_types

        return getattr(artifact_types, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
