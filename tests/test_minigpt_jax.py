"""The model and decoding code run unchanged on the JAX backend, with the same numbers.

Keras picks its backend once per process, so the JAX side runs in a child process with
KERAS_BACKEND=jax, on weights saved by this (TensorFlow-backend) process.
"""

import ast
import json
import os

import keras
import numpy as np

from components.minigpt.decoding import UncachedGenerator, make_sampler
from components.minigpt.losses import token_cross_entropy
from components.minigpt.model import GPTConfig, build_model
from tests.conftest import REPO_ROOT, last_json_line, run_on_jax

CFG = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=2)
TOKENS = [[2, 5, 9, 14, 3, 0, 0, 0], [2, 7, 7, 1, 30, 39, 12, 4]]

JAX_SIDE = """
import json, sys
import keras, numpy as np
from components.minigpt.decoding import UncachedGenerator, make_sampler
from components.minigpt.model import GPTConfig, build_model
cfg = GPTConfig(**json.loads(sys.argv[1]))
model = build_model(cfg)
model.load_weights(sys.argv[2])
logits = keras.ops.convert_to_numpy(model(np.array(json.loads(sys.argv[3]), dtype="int32")))
ids = UncachedGenerator(model, 2, 10).generate(make_sampler("greedy", {}, 0))
from components.minigpt.cached_decoding import CachedGenerator
cached, greedy = CachedGenerator(model, 2, 10), make_sampler("greedy", {}, 0)
cached_ids = [cached.generate(greedy, batch_size=2).tolist() for _ in range(3)]
from components.minigpt.losses import token_cross_entropy
labels = np.array(json.loads(sys.argv[3]), dtype="int32")
ce = token_cross_entropy(labels, keras.ops.cast(logits, "bfloat16"))
print(json.dumps({"backend": keras.backend.backend(), "logits": logits.tolist(), "greedy": ids.tolist(),
                  "cached_greedy": cached_ids, "cached_traces": cached.traces,
                  "ce": keras.ops.convert_to_numpy(ce).tolist(), "ce_dtype": str(ce.dtype)}))
"""


def test_same_weights_give_the_same_logits_and_greedy_tokens_on_jax(tmp_path):
    assert keras.backend.backend() == "tensorflow"
    keras.utils.set_random_seed(0)
    model = build_model(CFG)
    weights = str(tmp_path / "minigpt.weights.h5")
    model.save_weights(weights)
    jax_side = last_json_line(run_on_jax(JAX_SIDE, json.dumps(CFG.__dict__), weights, json.dumps(TOKENS)))
    assert jax_side["backend"] == "jax"
    np.testing.assert_allclose(jax_side["logits"], model(np.array(TOKENS, dtype="int32")), rtol=1e-4, atol=1e-5)
    reference = UncachedGenerator(model, 2, 10).generate(make_sampler("greedy", {}, 0)).tolist()
    assert jax_side["greedy"] == reference
    # The loss's cross-entropy: Keras' own on JAX, the softmax one on TensorFlow; float32 on both.
    bf16_logits = keras.ops.cast(np.array(jax_side["logits"], dtype="float32"), "bfloat16")
    ours = token_cross_entropy(np.array(TOKENS, dtype="int32"), bf16_logits)
    assert jax_side["ce_dtype"] == "float32" and ours.dtype == "float32"
    np.testing.assert_allclose(jax_side["ce"], ours, rtol=1e-5)
    # The cached decode on JAX: jitted once, reused, and the reference's tokens.
    assert jax_side["cached_greedy"] == [reference * 2] * 3
    assert jax_side["cached_traces"] == 1


DATA_PARALLEL_SIDE = """
import json
import keras, numpy as np
from components.minigpt.model import GPTConfig
from components.minigpt.training import TrainingSettings, build_trainable_model, use_every_local_device
devices = use_every_local_device()
cfg = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=1)
keras.utils.set_random_seed(0)
model = build_trainable_model(cfg, 1e-2, TrainingSettings("float32", None, 1))
labels = np.random.default_rng(0).integers(3, 40, size=(64, 16)).astype("int32")
features = np.concatenate([np.full((64, 1), 2, "int32"), labels[:, :-1]], axis=1)
history = model.fit(features, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
weight_devices = len(model.weights[0].value.sharding.device_set)
out = {"devices": devices, "loss": history.history["loss"], "weight_devices": weight_devices}
distribution = keras.distribution.distribution()
if distribution is not None:
    batch = keras.distribution.distribute_tensor(features[:16], distribution.get_data_layout((16, 16)))
    out["batch_shard_rows"] = [int(shard.data.shape[0]) for shard in batch.addressable_shards]
print(json.dumps(out))
"""


def _data_parallel_run(num_devices):
    flags = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={num_devices}"}
    return last_json_line(run_on_jax(DATA_PARALLEL_SIDE, extra_env=flags))


def test_every_local_device_holds_a_shard_and_learns_what_one_device_learns():
    one, two = _data_parallel_run(1), _data_parallel_run(2)
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["weight_devices"] == 2  # weights replicated on both devices
    assert two["batch_shard_rows"] == [8, 8]  # each device holds half of a 16-row batch
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)


def _module_level_imports(module: str) -> set:
    """The modules `module`'s file imports when it is imported (not those imported inside
    functions or under `if TYPE_CHECKING`), with the packages each import runs first."""
    path = os.path.join(REPO_ROOT, *module.split("."))
    path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return {".".join(name.split(".")[: i + 1]) for name in names for i in range(name.count(".") + 1)}


def test_the_training_core_imports_no_tensorflow_tfx_or_beam():
    """`benchmarks/train_step.py --backend jax` and all it imports of ours load on a machine
    with only keras, keras-hub, jax and numpy (the GPU machine has no TensorFlow): TensorFlow
    is imported inside the functions that run on its backend only."""
    ours, seen, external = ("benchmarks", "components", "pipeline"), set(), set()
    todo = ["benchmarks.train_step"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _module_level_imports(module):
            if name.split(".")[0] in ours:
                todo.append(name)
            else:
                external.add(name.split(".")[0])
    assert "components.minigpt.losses" in seen and "components.minigpt.model" in seen
    assert not external & {"tensorflow", "tensorflow_text", "tfx", "apache_beam", "mlflow"}, external
