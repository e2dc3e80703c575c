"""TFX components of the minigpt pipeline, one per sub-package.

`components.minigpt` holds the model and decoding code; it imports only Keras and
keras_hub so it also runs on the JAX backend, without TFX.
"""
