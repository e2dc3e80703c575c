"""Data parallel training over two real processes on JAX's multi-process runtime.

Two Python processes on this machine join through a coordinator on 127.0.0.1 (gloo
collectives, one CPU device each), as the replicas of a multi-worker pool would; each
feeds its half of every global batch. Their epoch logs must equal one process's on the
same global batches, and that process's logs and weights must be Keras' own `fit`'s.
The rows end in [PAD]s of various lengths (some rows are full), so the loss's mask
matters: the first [PAD] label counts, the ones after it do not.
"""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT, free_port

STEPS, BATCH, EPOCHS = 4, 16, 2
SIDE = f"""
import json, sys
num, pid, port, precision = *(int(a) for a in sys.argv[1:4]), sys.argv[4]
from components.minigpt import multiprocess
if num > 1:
    multiprocess.initialize(f"127.0.0.1:{{port}}", num, pid)
import jax, keras, numpy as np
from components.minigpt.model import GPTConfig
from components.minigpt.sequences import features_from_labels
from components.minigpt.training import TrainingSettings, build_trainable_model
cfg = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=1)
rng = np.random.default_rng(0)
labels = rng.integers(3, 40, size=({STEPS} * {BATCH}, 16)).astype("int32")
lengths = rng.integers(4, 17, size=len(labels))  # 16: a full row, without [PAD]
labels[np.arange(16) >= lengths[:, None]] = 0  # [PAD] from each row's length on
features = features_from_labels(labels, 2)
def fresh_model():
    keras.utils.set_random_seed(0)
    return build_trainable_model(cfg, 1e-2, TrainingSettings(precision, None, 1))
trainer = multiprocess.DataParallelTrainer(fresh_model())
batches = np.arange({STEPS} * {BATCH}).reshape({STEPS}, {BATCH})  # in order, as fit(shuffle=False)
logs = [trainer.train_epoch(features, labels, batches) for _ in range({EPOCHS})]
out = {{"processes": jax.process_count(), "local_devices": jax.local_device_count(), "logs": logs}}
if num == 1:  # the same batches through Keras' own fit, for its logs and the weights it ends with
    keras_model = fresh_model()
    history = keras_model.fit(features, labels, batch_size={BATCH}, epochs={EPOCHS}, shuffle=False, verbose=0)
    out["keras_logs"] = [{{name: history.history[name][e] for name in logs[0]}} for e in range({EPOCHS})]
    trainer.write_back()
    out["max_weight_difference"] = max(
        float(np.abs(np.asarray(ours.value) - np.asarray(theirs.value)).max())
        for ours, theirs in zip(trainer.model.trainable_variables, keras_model.trainable_variables)
    )
print(json.dumps(out))
"""


def _launch(num, pid, port, precision="float32"):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-c", SIDE, str(num), str(pid), str(port), precision],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _result(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _assert_logs_close(ours, theirs, rtol):
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys() == {"loss", "perplexity"}
        np.testing.assert_allclose([a["loss"], a["perplexity"]], [b["loss"], b["perplexity"]], rtol=rtol)


def test_two_processes_learn_what_keras_fit_learns_on_the_same_batches_ending_in_pad():
    port = free_port()
    pair = [_launch(2, pid, port) for pid in (0, 1)]
    first, second = (_result(p) for p in pair)
    alone = _result(_launch(1, 0, 0))
    assert (first["processes"], first["local_devices"]) == (2, 1)
    assert first["logs"] == second["logs"]  # one computation, two views
    _assert_logs_close(first["logs"], alone["logs"], rtol=1e-5)
    # The hand-compiled step is Keras' step: the same loss, perplexity and weights.
    _assert_logs_close(alone["logs"], alone["keras_logs"], rtol=1e-5)
    assert alone["max_weight_difference"] < 1e-5
    assert alone["logs"][-1]["loss"] < alone["logs"][0]["loss"]


def test_a_mixed_float16_step_is_keras_loss_scaled_step():
    """With float16 compute Keras scales the loss (`LossScaleOptimizer`); so must the
    hand-compiled step, or its gradients would be divided by the scale."""
    alone = _result(_launch(1, 0, 0, "mixed_float16"))
    _assert_logs_close(alone["logs"], alone["keras_logs"], rtol=1e-5)
    assert alone["max_weight_difference"] < 1e-5
