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
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple

import numpy as np


class TrainState(NamedTuple):
    trainable: List
    non_trainable: List
    optimizer: List


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Joins this process to the others (call before anything touches a JAX device)."""
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


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
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        self.state = TrainState(
            [self._replicate(v) for v in model.trainable_variables],
            [self._replicate(v) for v in model.non_trainable_variables],
            [self._replicate(v) for v in optimizer.variables],
        )
        self._step = jax.jit(self._make_step(model, optimizer, model.loss), donate_argnums=0)

    def _replicate(self, variable):
        value = np.asarray(variable.value)
        return self._jax.make_array_from_callback(value.shape, self._replicated, lambda index: value[index])

    @staticmethod
    def _make_step(model, optimizer, loss_fn) -> Callable:
        import jax  # pylint: disable=import-outside-toplevel

        def step(state: TrainState, features, labels):
            def loss_of(trainable):
                logits, non_trainable = model.stateless_call(trainable, state.non_trainable, features, training=True)
                return loss_fn(labels, logits), non_trainable

            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(state.trainable)
            trainable, optimizer_vars = optimizer.stateless_apply(state.optimizer, grads, state.trainable)
            return TrainState(trainable, non_trainable, optimizer_vars), loss

        return step

    def train_step(self, local_features: np.ndarray, local_labels: np.ndarray) -> float:
        """One step on the global batch made of every process's local rows; returns its loss."""
        make = self._jax.make_array_from_process_local_data
        features, labels = make(self._rows, local_features), make(self._rows, local_labels)
        self.state, loss = self._step(self.state, features, labels)
        return float(loss)

    def write_back(self) -> None:
        """Copies the trained state into the Keras model (to save or export it)."""
        for variables, values in (
            (self.model.trainable_variables, self.state.trainable),
            (self.model.non_trainable_variables, self.state.non_trainable),
        ):
            for variable, value in zip(variables, values):
                variable.assign(np.asarray(value.addressable_data(0)))
