"""Data parallel training over two real processes on JAX's multi-process runtime.

Two Python processes on this machine join through a coordinator on 127.0.0.1 (gloo
collectives, one CPU device each), as the replicas of a multi-worker pool would; each
feeds its half of every global batch. Their losses must equal one process's on the
same global batches, and that process's weights must match Keras' own `train_on_batch`.
"""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT, free_port

STEPS, BATCH = 4, 16
SIDE = f"""
import json, sys
num, pid, port = (int(a) for a in sys.argv[1:4])
from components.minigpt import multiprocess
if num > 1:
    multiprocess.initialize(f"127.0.0.1:{{port}}", num, pid)
import jax, keras, numpy as np
from components.minigpt.model import GPTConfig
from components.minigpt.training import TrainingSettings, build_trainable_model
cfg = GPTConfig(vocabulary_size=40, seq_len=16, embed_dim=16, ff_dim=16, num_heads=2, num_layers=1)
labels = np.random.default_rng(0).integers(3, 40, size=({STEPS} * {BATCH}, 16)).astype("int32")
features = np.concatenate([np.full((len(labels), 1), 2, "int32"), labels[:, :-1]], axis=1)
def fresh_model():
    keras.utils.set_random_seed(0)
    return build_trainable_model(cfg, 1e-2, TrainingSettings("float32", None, 1))
trainer = multiprocess.DataParallelTrainer(fresh_model())
share = {BATCH} // num
losses = []
for step in range({STEPS}):
    mine = slice(step * {BATCH} + pid * share, step * {BATCH} + (pid + 1) * share)
    losses.append(trainer.train_step(features[mine], labels[mine]))
out = {{"processes": jax.process_count(), "local_devices": jax.local_device_count(), "losses": losses}}
if num == 1:  # the same batches through Keras' own train step, for the weights it ends with
    keras_model = fresh_model()
    for step in range({STEPS}):
        rows = slice(step * {BATCH}, (step + 1) * {BATCH})
        keras_model.train_on_batch(features[rows], labels[rows])
    trainer.write_back()
    out["max_weight_difference"] = max(
        float(np.abs(np.asarray(ours.value) - np.asarray(theirs.value)).max())
        for ours, theirs in zip(trainer.model.trainable_variables, keras_model.trainable_variables)
    )
print(json.dumps(out))
"""


def _launch(num, pid, port):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-c", SIDE, str(num), str(pid), str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _result(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_learn_what_one_process_learns_on_the_same_global_batches():
    port = free_port()
    pair = [_launch(2, pid, port) for pid in (0, 1)]
    first, second = (_result(p) for p in pair)
    alone = _result(_launch(1, 0, 0))
    assert (first["processes"], first["local_devices"]) == (2, 1)
    np.testing.assert_allclose(first["losses"], second["losses"], rtol=0)  # one computation, two views
    np.testing.assert_allclose(first["losses"], alone["losses"], rtol=1e-5)
    # The hand-compiled step is Keras' step: the same weights after the same batches.
    assert alone["max_weight_difference"] < 1e-5
    assert alone["losses"][-1] < alone["losses"][0]
