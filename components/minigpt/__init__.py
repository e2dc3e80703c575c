"""The mini-GPT model, its tokenizer and its decoders.

Pure Keras 3 + keras_hub (no TFX, no `tf.*` in the model), so the same code trains under
the TensorFlow backend in the pipeline and under JAX on GPU workers.
"""
