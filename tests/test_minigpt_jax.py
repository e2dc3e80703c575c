"""The model and decoding code run unchanged on the JAX backend, with the same numbers.

Keras picks its backend once per process, so the JAX side runs in a child process with
KERAS_BACKEND=jax, on weights saved by this (TensorFlow-backend) process.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from components.minigpt.decoding import Generator, make_sampler
from components.minigpt.model import GPTConfig, build_model
from tests.conftest import REPO_ROOT

CFG = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=2)
TOKENS = [[2, 5, 9, 14, 3, 0, 0, 0], [2, 7, 7, 1, 30, 39, 12, 4]]

JAX_SIDE = """
import json, sys
import keras, numpy as np
from components.minigpt.decoding import Generator, make_sampler
from components.minigpt.model import GPTConfig, build_model
cfg = GPTConfig(**json.loads(sys.argv[1]))
model = build_model(cfg)
model.load_weights(sys.argv[2])
logits = keras.ops.convert_to_numpy(model(np.array(json.loads(sys.argv[3]), dtype="int32")))
ids = Generator(model, 2, 10).generate(make_sampler("greedy", {}, 0))
print(json.dumps({"backend": keras.backend.backend(), "logits": logits.tolist(), "greedy": ids.tolist()}))
"""


def test_same_weights_give_the_same_logits_and_greedy_tokens_on_jax(tmp_path):
    assert keras.backend.backend() == "tensorflow"
    keras.utils.set_random_seed(0)
    model = build_model(CFG)
    weights = str(tmp_path / "minigpt.weights.h5")
    model.save_weights(weights)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", JAX_SIDE, json.dumps(CFG.__dict__), weights, json.dumps(TOKENS)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jax_side = json.loads(out.stdout.strip().splitlines()[-1])
    assert jax_side["backend"] == "jax"
    np.testing.assert_allclose(jax_side["logits"], model(np.array(TOKENS, dtype="int32")), rtol=1e-4, atol=1e-5)
    assert jax_side["greedy"] == Generator(model, 2, 10).generate(make_sampler("greedy", {}, 0)).tolist()
