"""The training loop, in this process or in a child process on another Keras backend.

Keras picks its backend once per process, and TFX's executor runs in a TensorFlow
process. To train on JAX (the fast backend on GPUs), the Trainer runs this module as
`python -m components.trainer.fit REQUEST.json` with `KERAS_BACKEND=jax`: the child
reads the token ids, fits, logs every epoch to the pipeline's MLflow run, and saves the
kept weights as a `.keras` file, which the parent loads and exports as a TensorFlow
SavedModel. Nothing here imports TFX; the model and loop are pure Keras.

On a multi-replica job (Vertex AI's `CLUSTER_SPEC` lists more than one process) every
replica runs this on JAX: the processes join JAX's multi-process runtime and train data
parallel (`components.minigpt.multiprocess`); the chief validates, logs and keeps the
best epoch, the other replicas only train their share.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import keras
from mlflow.tracking import MlflowClient

from components.data.artifact_types import read_vocabulary
from components.data.lm_data import read_labels
from components.minigpt import multiprocess
from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.callbacks import EpochShuffle, KeepBestEpoch, RaiseOnInterrupt, RowBatches
from components.minigpt.decoding import make_sampler
from components.minigpt.model import GPTConfig
from components.minigpt.sequences import batches_per_epoch, features_from_labels, spread_batches
from components.minigpt.tokenizer import TextCodec
from components.minigpt.training import (
    build_trainable_model,
    check_gpus_usable,
    learning_rate_schedule,
    pads_partial_batches,
    resolve_settings,
    use_compilation_cache,
    use_every_local_device,
)
from components.runtime.errors import ConfigError, InputDataError, UserInputError
from components.tracking.buffered_run import BufferedRun, Call
from components.tracking.champion import current_champion
from components.tracking.mlflow_runs import PipelineRun
from components.trainer import keys, warm_start

logger = logging.getLogger("components.trainer.fit")


@dataclasses.dataclass(frozen=True)
class FitRequest:
    """Everything one fit needs; JSON-serialisable, so it can cross into a child process."""

    custom_config: Dict[str, Any]
    train_files: List[str]
    eval_files: List[str]
    checkpoint_dir: str
    mlflow_run_id: Optional[str]  # None: log nothing (a replica that is not the chief)


@dataclasses.dataclass(frozen=True)
class FitResult:
    best_epoch: Optional[int]
    best_value: Optional[float]
    # What the fitting process resolved: its Keras backend and dtype policy.
    backend: str
    precision: str
    # Logging calls the tracking server was not there for (see BufferedRun).
    unlogged: List[Call] = dataclasses.field(default_factory=list)


def sectioned(keras_name: str) -> str:
    """Keras' epoch log names as MLflow curve sections: `val_loss` -> `val/loss`, `loss`
    -> `train/loss` (see `components.tracking.mlflow_runs` for the naming rule)."""
    return f"val/{keras_name[4:]}" if keras_name.startswith("val_") else f"train/{keras_name}"


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs per-epoch metrics and a top-k text sample to the pipeline's MLflow run."""

    def __init__(self, run: BufferedRun, codec: TextCodec, num_tokens: int, k: int, seed: int):
        super().__init__()
        self._run = run
        self._codec = codec
        self._num_tokens = num_tokens
        self._sampler = make_sampler("top_k", {"k": k}, seed)
        self._generator = None
        self._epoch_start = 0.0

    def on_train_begin(self, logs: Dict[str, float] = None) -> None:
        self._generator = CachedGenerator(self.model, self._codec.bos_id, self._num_tokens)

    def on_epoch_begin(self, epoch: int, logs: Dict[str, float] = None) -> None:
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch: int, logs: Dict[str, float] = None) -> None:
        step = epoch + 1
        metrics = {**(logs or {}), "seconds_per_epoch": time.time() - self._epoch_start}
        # The rate the schedule has reached (`lr`: after `loss` in the UI's `train` section).
        metrics["lr"] = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        self._run.log("log_metrics", {sectioned(name): float(value) for name, value in metrics.items()}, step)
        text = self._codec.detokenize(self._generator.generate(self._sampler))[0]
        logger.info("Epoch %d top-k sample: %s", step, text)
        self._run.log("log_text", text + "\n", f"samples/epoch_{step:03d}.txt")


def fit(request: FitRequest) -> "tuple[keras.Model, FitResult]":
    """Fits the model on the current backend; returns it with the kept epoch's weights."""
    role = multiprocess.cluster_role()
    if role:  # before anything touches a JAX device
        multiprocess.initialize(role.coordinator, role.num_processes, role.process_id)
    cfg = request.custom_config
    cache_dir = cfg.get(keys.COMPILATION_CACHE_DIR)
    if cache_dir and use_compilation_cache(cache_dir):  # before anything is compiled
        logger.info("JAX compilation cache: %s", cache_dir)
    train_cfg = cfg[keys.TRAIN]
    vocab = read_vocabulary(cfg[keys.VOCABULARY_PATH])
    gpt = GPTConfig.for_vocabulary(cfg[keys.MODEL], vocab)
    codec = TextCodec(vocab, gpt.seq_len, lowercase=cfg[keys.LOWERCASE])
    keras.utils.set_random_seed(train_cfg["seed"])
    train_labels = read_labels(request.train_files, gpt.seq_len, "train")
    eval_labels = read_labels(request.eval_files, gpt.seq_len, "eval")
    # That many batches of rows across the split, not its first ones.
    eval_labels = spread_batches(eval_labels, train_cfg["validation_steps"], train_cfg["batch_size"])
    train_data = (features_from_labels(train_labels, codec.bos_id), train_labels)
    eval_data = (features_from_labels(eval_labels, codec.bos_id), eval_labels)
    tracking_uri = cfg[keys.MLFLOW]["tracking_uri"]
    run = None
    if request.mlflow_run_id is not None:
        run = BufferedRun(PipelineRun(MlflowClient(tracking_uri), request.mlflow_run_id), tracking_uri)

    # Resolved here, where the backend that will train is the one that looks for a GPU.
    settings = resolve_settings(train_cfg["precision"], train_cfg["jit_compile"], train_cfg["steps_per_execution"])
    check_gpus_usable()
    devices = multiprocess.device_count() if role else use_every_local_device()
    batches = batches_per_epoch(
        len(train_labels), train_cfg["batch_size"], keep_partial=not role, max_steps=train_cfg["steps_per_epoch"]
    )
    rate = learning_rate_schedule(
        train_cfg["learning_rate"], train_cfg["learning_rate_schedule"], batches * train_cfg["epochs"]
    )
    model = build_trainable_model(gpt, rate, settings)
    model.summary(print_fn=logger.info)
    start = None
    if train_cfg["warm_start"] == "champion":
        with current_champion(tracking_uri) as champion:
            start = warm_start.load_champion_weights(model, champion, vocab, gpt)
        logger.info("Warm start: %s.", start.reason)
    # Kept beside the backup on one process; a multi-process job does not resume.
    best = KeepBestEpoch("val_perplexity", None if role else request.checkpoint_dir)
    callbacks: List[keras.callbacks.Callback] = [RaiseOnInterrupt(), best]
    if not role:  # after `best`: an epoch is backed up only once its weights could be kept
        callbacks.append(keras.callbacks.BackupAndRestore(request.checkpoint_dir))
    if run:
        run.log("log_metrics", {"model.num_parameters": model.count_params()}, 0)
        run.log("set_tag", "minigpt.devices", str(devices))
        if start:
            run.log("set_tag", warm_start.TAG, start.reason)
            run.log("log_params", {"train.warm_started_from": start.champion or "none"})
        k, num_tokens = train_cfg["epoch_sample_k"], train_cfg["epoch_sample_tokens"]
        callbacks.append(MlflowEpochLogger(run, codec, num_tokens, k, train_cfg["seed"]))
    if role:
        fit_across_processes(model, role, train_data, eval_data, train_cfg, callbacks if role.is_chief else [])
    else:
        fit_one_process(model, train_data, eval_data, train_cfg, callbacks)
    if best.best_epoch is not None:
        logger.info("Keeping epoch %d's weights (val_perplexity %.2f).", best.best_epoch, best.best_value)
        if run:
            run.log("log_metrics", {"train.best_epoch": best.best_epoch, "val.best_perplexity": best.best_value}, 0)
    pending = run.pending if run else []
    return model, FitResult(best.best_epoch, best.best_value, keras.backend.backend(), settings.precision, pending)


def fit_one_process(
    model: keras.Model,
    train_data: "tuple",
    eval_data: "tuple",
    train_cfg: Dict[str, Any],
    callbacks: List[keras.callbacks.Callback],
) -> keras.callbacks.History:
    """Keras `fit` in this process, each epoch's rows in a fresh order drawn from the seed
    and the epoch (`EpochShuffle`).

    With a `BackupAndRestore` among `callbacks`, a killed fit started again in a new
    process goes on from the backup with the batches the uninterrupted fit would have
    seen, and so the same losses and weights. Exactly, because the reference model has
    no dropout (keras_hub's decoder defaults to `dropout=0`): Keras' backup holds the
    weights and the optimizer's state, not its layers' `SeedGenerator` state, so a model
    with dropout would draw the resumed epochs' masks from a restarted generator.
    """
    batch_size, pad = train_cfg["batch_size"], pads_partial_batches()
    shuffle = EpochShuffle(*train_data, batch_size, train_cfg["seed"], train_cfg["steps_per_epoch"], pad)
    return model.fit(
        shuffle.batches,
        shuffle=False,
        validation_data=RowBatches(*eval_data, batch_size, pad=True) if pad else eval_data,
        validation_batch_size=None if pad else batch_size,
        epochs=train_cfg["epochs"],
        callbacks=[shuffle, *callbacks],
        # A live progress bar on a terminal, one line per epoch in logs and CI.
        verbose=1 if sys.stdout.isatty() else 2,
    )


def fit_across_processes(
    model: keras.Model,
    role: multiprocess.ClusterRole,
    train_data: "tuple",
    eval_data: "tuple",
    train_cfg: Dict[str, Any],
    callbacks: List[keras.callbacks.Callback],
) -> List[Dict[str, float]]:
    """Keras `fit`'s epochs over every process of a multi-replica job; each epoch's logs.

    Each process feeds its share of every global batch (`multiprocess.DataParallelTrainer`);
    after each epoch the chief validates with Keras' `evaluate` and runs `callbacks` with
    the logs `fit` would give them. Not done on this path: resuming a killed job from a
    backup (Keras' `BackupAndRestore` is single-process), and the last partial batch of an
    epoch, which is dropped so that every process always feeds an equal share.
    """
    batch_size = train_cfg["batch_size"]
    trainer = multiprocess.DataParallelTrainer(model)
    if batch_size % trainer.num_devices:
        raise ConfigError(
            "train.batch_size",
            f"{batch_size} does not split evenly over the {trainer.num_devices} devices of "
            f"{role.num_processes} training processes: use a multiple of {trainer.num_devices}",
        )
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    callback_list.on_train_begin()
    history = []
    for epoch in range(train_cfg["epochs"]):
        callback_list.on_epoch_begin(epoch)
        batches = multiprocess.epoch_batches(
            len(train_data[1]), batch_size, train_cfg["seed"], epoch, train_cfg["steps_per_epoch"]
        )
        logs = trainer.train_epoch(*train_data, batches)
        trainer.write_back()
        if role.is_chief:
            eval_batches = RowBatches(*eval_data, batch_size, pad=pads_partial_batches())  # one shape on JAX
            validation = model.evaluate(eval_batches, return_dict=True, verbose=0)
            logs.update({f"val_{name}": float(value) for name, value in validation.items()})
        logger.info(
            "Epoch %d/%d (process %d of %d): %s",
            epoch + 1,
            train_cfg["epochs"],
            role.process_id,
            role.num_processes,
            ", ".join(f"{name} {value:.4f}" for name, value in logs.items()),
        )
        callback_list.on_epoch_end(epoch, logs)
        history.append(logs)
    callback_list.on_train_end()
    return history


def fit_in_child_process(request: FitRequest, backend: str, work_dir: str) -> "tuple[keras.Model, FitResult]":
    """Runs `fit` under `KERAS_BACKEND=backend` in a child process and loads its model here.

    The child's log goes to this process's stdout/stderr. A mistake in the user's data is
    re-raised here as the same one-line InputDataError; any other failure names the exit
    code (the child's traceback is in the log above it).
    """
    os.makedirs(work_dir, exist_ok=True)  # local: the child and this process exchange files there
    request_path = os.path.join(work_dir, "fit_request.json")
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(request), f)
    env = {**os.environ, "KERAS_BACKEND": backend}
    code = subprocess.run([sys.executable, "-m", "components.trainer.fit", request_path], env=env).returncode
    result_path = _result_path(request_path)
    result = {}
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            result = json.load(f)
    if "user_error" in result:
        raise InputDataError(result["user_error"])
    if code != 0 or "result" not in result:
        raise RuntimeError(f"training on KERAS_BACKEND={backend} in a child process failed (exit code {code})")
    return keras.models.load_model(_model_path(request_path)), FitResult(**result["result"])


def _result_path(request_path: str) -> str:
    return os.path.join(os.path.dirname(request_path), "fit_result.json")


def _model_path(request_path: str) -> str:
    return os.path.join(os.path.dirname(request_path), "fitted.keras")


def main(argv: List[str]) -> int:
    """Child entry point: `python -m components.trainer.fit REQUEST.json`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (request_path,) = argv
    with open(request_path, encoding="utf-8") as f:
        raw = json.load(f)
    request = FitRequest(**raw)
    try:
        model, result = fit(request)
    except UserInputError as e:
        outcome = {"user_error": str(e)}
    else:
        model.save(_model_path(request_path))
        outcome = {"result": dataclasses.asdict(result)}
    with open(_result_path(request_path), "w", encoding="utf-8") as f:
        json.dump(outcome, f)
    return 0 if "result" in outcome else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
