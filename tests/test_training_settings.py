"""`train.precision` / `train.backend: auto` and the other speed settings resolve per
machine, bad ones fail, and TensorFlow mirrors a step over several devices."""

import json
import subprocess
import sys

import numpy as np
import pytest

from components.minigpt import training
from components.runtime.errors import ConfigError, MachineError
from pipeline.config import load_config
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    "gpu, bf16_cpu, expected",
    [(True, False, "mixed_bfloat16"), (False, True, "mixed_bfloat16"), (False, False, "float32")],
)
def test_auto_precision_is_bf16_where_the_hardware_has_it(monkeypatch, gpu, bf16_cpu, expected):
    monkeypatch.setattr(training, "has_gpu", lambda: gpu)
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: bf16_cpu)
    assert training.resolve_settings("auto", None, 1) == (expected, None, 1)
    # An explicit choice is kept as it is.
    assert training.resolve_settings("float32", True, 4) == ("float32", True, 4)


def test_cpu_bf16_is_read_from_the_cpu_flags_within_onednns_cap(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    assert training.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
    # oneDNN capped below its bf16 kernels (the AVX2 class, emulated): no bf16, whatever the CPU.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert not training.cpu_has_bf16()


def test_unknown_precision_is_rejected_at_load_and_at_resolve():
    with pytest.raises(ConfigError, match="train.precision: must be one of auto, float32"):
        load_config(None, ["train.precision=fp8"])
    with pytest.raises(ValueError, match="precision must be one of"):
        training.resolve_settings("fp8", None, 1)
    with pytest.raises(ConfigError, match="train.jit_compile: must be true or false"):
        load_config(None, ["train.jit_compile=maybe"])
    assert load_config(None, ["train.jit_compile=null"]).train.jit_compile is None
    with pytest.raises(ConfigError, match="train.steps_per_execution: must be positive"):
        load_config(None, ["train.steps_per_execution=0"])


def test_the_learning_rate_is_the_reference_constant_or_a_cosine_down_to_a_tenth():
    assert training.learning_rate_schedule(1e-3, "constant", 100) == 1e-3
    cosine = training.learning_rate_schedule(1e-3, "cosine", 100)
    rates = [float(cosine(step)) for step in (0, 50, 100, 150)]
    assert rates == pytest.approx([1e-3, 0.55e-3, 1e-4, 1e-4])  # peak, halfway, then the floor
    with pytest.raises(ValueError, match="learning-rate schedule must be one of constant, cosine"):
        training.learning_rate_schedule(1e-3, "linear", 100)


@pytest.mark.parametrize("gpus, expected", [(["0000:00:04.0"], "jax"), ([], "tensorflow")])
def test_auto_backend_is_jax_where_the_driver_lists_a_gpu(tmp_path, monkeypatch, gpus, expected):
    for gpu in gpus:
        (tmp_path / gpu).mkdir()
    monkeypatch.setattr(training, "NVIDIA_GPUS_DIR", str(tmp_path))
    assert training.resolve_backend("auto") == expected
    monkeypatch.setattr(training, "NVIDIA_GPUS_DIR", str(tmp_path / "no-driver"))
    assert training.resolve_backend("auto") == "tensorflow"
    assert training.resolve_backend("jax") == "jax"


def test_unknown_backend_is_rejected_at_load():
    with pytest.raises(ConfigError, match="train.backend: must be one of auto, tensorflow, jax"):
        load_config(None, ["train.backend=torch"])


MIRRORED_SIDE = """
import json, sys
import tensorflow as tf
n = int(sys.argv[1])
if n > 1:  # n logical CPU devices stand in for n GPUs
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
import keras, numpy as np
from components.minigpt.model import GPTConfig
from components.minigpt.training import TrainingSettings, build_trainable_model, use_every_local_device
devices = use_every_local_device("CPU")
cfg = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=1)
keras.utils.set_random_seed(0)
model = build_trainable_model(cfg, 1e-2, TrainingSettings("float32", None, 1))
labels = np.random.default_rng(0).integers(3, 40, size=(64, 16)).astype("int32")
features = np.concatenate([np.full((64, 1), 2, "int32"), labels[:, :-1]], axis=1)
history = model.fit(features, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
replicas = model.distribute_strategy.num_replicas_in_sync
print(json.dumps({"devices": devices, "replicas": replicas, "loss": history.history["loss"]}))
"""


def _mirrored_run(num_devices):
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SIDE, str(num_devices)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tensorflow_mirrors_the_step_over_every_device_and_learns_what_one_device_learns():
    one, two = _mirrored_run(1), _mirrored_run(2)
    assert (one["devices"], one["replicas"]) == (1, 1)
    assert (two["devices"], two["replicas"]) == (2, 2)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)


TINY_GPT = dict(vocabulary_size=31, seq_len=16, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
FEATURES = np.array([[2, 5, 6, 7, 0, 0], [2, 7, 7, 9, 30, 12]], dtype="int32")
LABELS = np.array([[5, 6, 7, 0, 0, 0], [7, 7, 9, 30, 12, 4]], dtype="int32")


def _trainable_model(precision):
    import keras

    from components.minigpt.model import GPTConfig

    keras.utils.set_random_seed(0)
    return training.build_trainable_model(GPTConfig(**TINY_GPT), 1e-2, training.TrainingSettings(precision, None, 1))


def _weight_change_of_a_tiny_loss_step(model, optimizer) -> float:
    """Keras' own step with the loss times 1e-8: its float16 gradients underflow to zero
    unless the loss is scaled up first."""
    before = model.get_weights()
    model.compile(optimizer=optimizer, loss=model.loss, loss_weights=[1e-8])
    model.train_on_batch(FEATURES, LABELS)
    return max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), before))


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_float32_and_bfloat16_do_not_scale_the_loss(precision):
    import keras

    assert not isinstance(_trainable_model(precision).optimizer, keras.optimizers.LossScaleOptimizer)


def test_float16_scales_the_loss_so_that_tiny_gradients_still_train():
    import keras

    model = _trainable_model("mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    float32 = _trainable_model("float32")
    float32_change = _weight_change_of_a_tiny_loss_step(float32, float32.optimizer)
    assert float32_change > 0
    np.testing.assert_allclose(_weight_change_of_a_tiny_loss_step(model, model.optimizer), float32_change, rtol=0.01)
    # Without loss scaling (what `compile` gave a float16 model before) the step learns nothing.
    assert _weight_change_of_a_tiny_loss_step(_trainable_model("mixed_float16"), keras.optimizers.Adam(1e-2)) == 0


def test_a_float16_model_saves_and_loads_with_its_loss_scaling(tmp_path):
    import keras

    model = _trainable_model("mixed_float16")
    model.train_on_batch(FEATURES, LABELS)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    expected = model.evaluate(FEATURES, LABELS, verbose=0)
    np.testing.assert_allclose(loaded.evaluate(FEATURES, LABELS, verbose=0), expected)


def test_a_gpu_the_driver_lists_but_the_backend_cannot_use_stops_training(monkeypatch, tmp_path):
    """JAX would quietly train on the CPU of a GPU machine whose CUDA libraries did not
    load: a driver listing one GPU (faked) and a backend that sees none (this machine) fail."""
    monkeypatch.setattr(training, "NVIDIA_GPUS_DIR", str(tmp_path))
    training.check_gpus_usable()  # the driver lists none: nothing to check
    (tmp_path / "0000:00:04.0").mkdir()
    expected = (
        r"^the NVIDIA driver lists 1 GPU\(s\) \(.*\) but Keras' tensorflow backend sees none, so training would "
        r"run on the CPU: .*print\(tf.config.list_physical_devices"
    )
    with pytest.raises(MachineError, match=expected):
        training.check_gpus_usable()
    monkeypatch.setattr(training, "has_gpu", lambda: True)
    training.check_gpus_usable()
