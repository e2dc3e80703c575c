"""Data parallel training across processes on JAX's multi-process runtime.

What a Vertex AI multi-replica worker pool or a Kubernetes job gives: N processes, each
with its own devices, one of them the coordinator. Every process runs the same jitted
step on a global batch whose rows are spread over all processes' devices; XLA sums the
gradients across processes (gloo on CPUs, NCCL on GPUs), so the step learns what one
process would on the whole batch.

Keras' own `DataParallel` cannot do this with the pinned jax 0.4.30 (creating variables
`device_put`s to devices of other processes, which that jax refuses), so the state is
built with `jax.make_array_from_callback`, the batches with
`jax.make_array_from_process_local_data`, and the step is the model's `stateless_call`
under `jax.jit`.

A replica learns its place from Vertex AI's `CLUSTER_SPEC` (`cluster_role`): the first
address of worker pool 0 is the chief, which coordinates, validates, logs and exports.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional

import numpy as np

from components.minigpt.sequences import epoch_order

# Set by Vertex AI on every replica of a custom job: the pools' addresses and this task.
CLUSTER_SPEC_ENV = "CLUSTER_SPEC"


class TrainState(NamedTuple):
    trainable: List
    non_trainable: List
    optimizer: List


class ClusterRole(NamedTuple):
    coordinator: str  # host:port of the chief, where JAX's coordination service listens
    num_processes: int
    process_id: int  # 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0


def cluster_role(environ: Mapping[str, str] = os.environ) -> Optional[ClusterRole]:
    """This replica's place in a multi-replica job, from `CLUSTER_SPEC`; None when alone.

    Vertex AI writes `{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...]},
    "task": {"type": "workerpool1", "index": 0}, ...}`. Processes are numbered pool by
    pool, so the one replica of worker pool 0 is process 0. A one-replica job (which
    Vertex describes the same way) is alone: it trains with Keras' own `fit`.
    """
    raw = environ.get(CLUSTER_SPEC_ENV)
    if not raw:
        return None
    spec = json.loads(raw)
    cluster, task = spec["cluster"], spec["task"]
    pools = sorted(cluster)  # workerpool0, workerpool1, ...
    addresses = [address for pool in pools for address in cluster[pool]]
    if len(addresses) < 2:
        return None
    before = sum(len(cluster[pool]) for pool in pools[: pools.index(task["type"])])
    return ClusterRole(addresses[0], len(addresses), before + int(task["index"]))


def epoch_batches(num_rows: int, batch_size: int, seed: int, epoch: int, max_steps: Optional[int] = None) -> List:
    """Row indices of each global batch of one epoch, the same in every process.

    A fresh seeded shuffle each epoch, as Keras' `fit(shuffle=True)` does; the last
    partial batch is dropped, so that every process always feeds an equal share.
    """
    order = epoch_order(num_rows, seed, epoch)
    batches = [order[start : start + batch_size] for start in range(0, num_rows - batch_size + 1, batch_size)]
    return batches[:max_steps] if max_steps else batches


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Joins this process to the others (call before anything touches a JAX device)."""
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def device_count() -> int:
    """Devices of every process together (after `initialize`)."""
    import jax  # pylint: disable=import-outside-toplevel

    return jax.device_count()


class DataParallelTrainer:
    """One compiled train step of a built, compiled Keras model, over every device of
    every process: weights replicated, batch rows sharded."""

    def __init__(self, model):
        import jax  # pylint: disable=import-outside-toplevel
        from jax.sharding import Mesh, NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel

        self._jax = jax
        self.model = model
        mesh = Mesh(np.array(jax.devices()), ("batch",))
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self._rows = NamedSharding(mesh, PartitionSpec("batch"))
        self.num_devices = mesh.size
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        self.state = TrainState(
            [self._replicate(v) for v in model.trainable_variables],
            [self._replicate(v) for v in model.non_trainable_variables],
            [self._replicate(v) for v in optimizer.variables],
        )
        self._step = jax.jit(self._make_step(model, optimizer), donate_argnums=0)

    def _replicate(self, variable):
        value = np.asarray(variable.value)
        return self._jax.make_array_from_callback(value.shape, self._replicated, lambda index: value[index])

    @staticmethod
    def _make_step(model, optimizer) -> Callable:
        """The compiled model's step: its compiled loss (the mean over `counted_positions`),
        scaled as Keras scales it for its optimizer (a `LossScaleOptimizer` unscales the
        gradients), plus the batch's mean cross-entropy over non-[PAD] labels, the value
        keras_hub's `Perplexity` adds up for a batch."""
        import jax  # pylint: disable=import-outside-toplevel
        import keras  # pylint: disable=import-outside-toplevel

        from components.minigpt.losses import PAD_ID, token_cross_entropy  # pylint: disable=import-outside-toplevel

        def step(state: TrainState, features, labels):
            def loss_of(trainable):
                logits, non_trainable = model.stateless_call(trainable, state.non_trainable, features, training=True)
                loss = model.loss(labels, logits)
                with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, state.optimizer))):
                    scaled = optimizer.scale_loss(loss)
                return scaled, (loss, non_trainable, logits)

            (_, (loss, non_trainable, logits)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.trainable)
            trainable, optimizer_vars = optimizer.stateless_apply(state.optimizer, grads, state.trainable)
            kept = keras.ops.cast(labels != PAD_ID, "float32")
            label_cross_entropy = keras.ops.sum(token_cross_entropy(labels, logits) * kept) / keras.ops.sum(kept)
            return TrainState(trainable, non_trainable, optimizer_vars), (loss, label_cross_entropy)

        return step

    def train_step(self, local_features: np.ndarray, local_labels: np.ndarray) -> "tuple[float, float]":
        """One step on the global batch made of every process's local rows; returns its loss
        and its mean cross-entropy over non-[PAD] labels."""
        make = self._jax.make_array_from_process_local_data
        features, labels = make(self._rows, local_features), make(self._rows, local_labels)
        self.state, measures = self._step(self.state, features, labels)
        return tuple(float(m) for m in measures)

    def train_epoch(self, features: np.ndarray, labels: np.ndarray, batches: List) -> Dict[str, float]:
        """One pass over `batches` (global row indices, `epoch_batches`), this process
        feeding its share of each; the epoch's logs as Keras' `fit` reports them.

        `loss`: the mean of the steps' losses (Keras' running mean weights each by its
        rows; the batches are equal). `perplexity`: keras_hub's `Perplexity`, the metric
        `fit` logs, computed the same way: exp of the mean over the epoch's batches of each
        batch's mean cross-entropy over its non-[PAD] labels (keras_hub weights each batch
        by its sequences; the batches are equal). Not a token-weighted perplexity, and its
        mask is the labels', not the loss's `counted_positions`: it leaves out the first
        [PAD] of each row, which the loss counts.
        """
        count, index = self._jax.process_count(), self._jax.process_index()
        losses, label_cross_entropies = [], []
        for rows in batches:
            share = len(rows) // count
            mine = rows[index * share : (index + 1) * share]
            loss, label_cross_entropy = self.train_step(features[mine], labels[mine])
            losses.append(loss)
            label_cross_entropies.append(label_cross_entropy)
        return {"loss": float(np.mean(losses)), "perplexity": float(np.exp(np.mean(label_cross_entropies)))}

    def write_back(self) -> None:
        """Copies the trained state into the Keras model and its optimizer (to validate,
        save or export it, and so the optimizer's step count drives its schedule)."""
        for variables, values in (
            (self.model.trainable_variables, self.state.trainable),
            (self.model.non_trainable_variables, self.state.non_trainable),
            (self.model.optimizer.variables, self.state.optimizer),
        ):
            for variable, value in zip(variables, values):
                variable.assign(np.asarray(value.addressable_data(0)))
