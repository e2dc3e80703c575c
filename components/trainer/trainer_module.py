"""The Trainer's `run_fn`: fits the mini-GPT on the token ids and exports it.

TFX's Trainer calls `run_fn`. Settings come from `fn_args.custom_config` (built by
`pipeline/dag.py`), never from module constants, so one module serves every config.
The fit itself (`components.trainer.fit`) runs on the backend `train.backend` resolves
to: here when that is this process's TensorFlow, else in a child process; the export to
a TensorFlow SavedModel always happens here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Any, Dict, Iterator

import keras
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from components.data.artifact_types import read_vocabulary
from components.data.formats import LENGTH_BUCKET_BYTES
from components.minigpt import multiprocess
from components.minigpt.decoders import check_fits_vocabulary
from components.minigpt.model import GPTConfig
from components.minigpt.training import resolve_backend
from components.runtime.errors import ConfigError
from components.runtime.paths import is_uri
from components.serving import model_bundle
from components.tracking import plots
from components.tracking.buffered_run import BufferedRun
from components.tracking.mlflow_runs import PipelineRun
from components.trainer import keys
from components.trainer.fit import FitRequest, fit, fit_in_child_process

logger = logging.getLogger(__name__)
# In the model_run folder: the logging calls an unreachable tracking server missed.
UNLOGGED_FILE = "mlflow_unlogged.json"
# How often a replica that is not the chief looks for the chief's export.
EXPORT_POLL_S = 2.0


def _checkpoint_dir(cfg: Dict[str, Any], fn_args: tfx.components.FnArgs) -> str:
    """Stable across retries of the same training job, distinct for any other job.

    TFX gives every execution a fresh output directory, so a killed run's backups must
    live outside it to be found by the retry.
    """
    identity = json.dumps(
        [
            cfg[keys.MODEL],
            cfg[keys.TRAIN],
            cfg[keys.VOCABULARY_PATH],
            sorted(fn_args.train_files),
            cfg.get(keys.CODE_DIGEST),
        ],
        sort_keys=True,
    )
    return os.path.join(cfg[keys.CHECKPOINT_ROOT], hashlib.sha1(identity.encode()).hexdigest()[:16])


@contextlib.contextmanager
def exchange_dir(fn_args: tfx.components.FnArgs, process_id: int) -> Iterator[str]:
    """Where a fit's child process and this process exchange files (plain file I/O):
    under `model_run_dir` when that is local (kept to inspect), else a local temporary
    folder, removed once the fit is loaded (on Vertex `model_run_dir` is a bucket, shared
    by every replica)."""
    name = "fit" if process_id == 0 else f"fit-process-{process_id}"
    if is_uri(fn_args.model_run_dir):
        with tempfile.TemporaryDirectory(prefix=f"minigpt-{name}-") as path:
            yield path
    else:
        yield os.path.join(fn_args.model_run_dir, name)


def _train_share(request: FitRequest, backend: str, fn_args: tfx.components.FnArgs, role) -> None:
    """A replica other than the chief: trains its share of every batch, then waits for the
    chief's export, since TFX fails any replica whose `run_fn` leaves no model behind."""
    with exchange_dir(fn_args, role.process_id) as work_dir:
        fit_in_child_process(request, backend, work_dir)
    logger.info(
        "Process %d of %d trained its share; waiting for the chief's export in %s.",
        role.process_id,
        role.num_processes,
        fn_args.serving_model_dir,
    )
    while not fileio.exists(fn_args.serving_model_dir):
        time.sleep(EXPORT_POLL_S)


def _backend_for(train_cfg: Dict[str, Any], role) -> str:
    """`train.backend` resolved; across several processes only JAX can train."""
    backend = resolve_backend(train_cfg["backend"])
    if role is None or backend == "jax":
        return backend
    if train_cfg["backend"] == "tensorflow":
        raise ConfigError(
            "train.backend",
            f"tensorflow cannot train across the {role.num_processes} replicas of this job: "
            "use auto or jax (JAX's multi-process runtime)",
        )
    return "jax"


# TFX Trainer will call this function.
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the reference mini-GPT and exports it to `fn_args.serving_model_dir`."""
    cfg = fn_args.custom_config
    train_cfg = cfg[keys.TRAIN]
    vocab = read_vocabulary(cfg[keys.VOCABULARY_PATH])
    gpt = GPTConfig.for_vocabulary(cfg[keys.MODEL], vocab)
    check_fits_vocabulary(
        "train.epoch_sample_k", train_cfg["epoch_sample_k"], gpt.vocabulary_size, "the learned vocabulary"
    )
    role = multiprocess.cluster_role()
    backend = _backend_for(train_cfg, role)
    if role and not role.is_chief:
        request = FitRequest(
            cfg, list(fn_args.train_files), list(fn_args.eval_files), _checkpoint_dir(cfg, fn_args), None
        )
        _train_share(request, backend, fn_args, role)
        return
    mlflow_cfg = cfg[keys.MLFLOW]
    run = PipelineRun.for_pipeline_run(
        mlflow_cfg["tracking_uri"], mlflow_cfg["experiment_name"], cfg[keys.PIPELINE_NAME], cfg[keys.PIPELINE_RUN_ID]
    )
    params = {
        **cfg[keys.PARAMS],
        "model.vocabulary_size_learned": gpt.vocabulary_size,
        "train.backend_resolved": backend,
    }
    with run.failed_on_error():
        run.log_params(params)
        datasets = cfg.get(keys.DATASETS, [])
        run.log_datasets(datasets)
        histograms = {d["split"]: {int(k): v for k, v in d["length_histogram"].items()} for d in datasets}
        if any(histograms.values()):
            cut = int(cfg[keys.PARAMS].get("data.min_training_seq_len", 0))
            run.log_figure(plots.line_lengths(histograms, LENGTH_BUCKET_BYTES, cut), "plots/line_lengths.png")
        request = FitRequest(
            custom_config=cfg,
            train_files=list(fn_args.train_files),
            eval_files=list(fn_args.eval_files),
            checkpoint_dir=_checkpoint_dir(cfg, fn_args),
            mlflow_run_id=run.run_id,
        )
        if backend == keras.backend.backend():
            model, result = fit(request)
        else:
            with exchange_dir(fn_args, 0) as work_dir:
                model, result = fit_in_child_process(request, backend, work_dir)
        params["train.precision_resolved"] = result.precision
        model_bundle.export(
            fn_args.serving_model_dir,
            model,
            model_bundle.Manifest(gpt, cfg[keys.LOWERCASE], run.run_id, cfg[keys.PIPELINE_RUN_ID], params),
            cfg[keys.VOCABULARY_PATH],
            generate_tokens=train_cfg["epoch_sample_tokens"],
        )
        # From here on a tracking server outage costs the Trainer nothing: the model is
        # exported, and what the server misses is kept, replayed or listed (BufferedRun).
        tracked = BufferedRun(run, mlflow_cfg["tracking_uri"])
        tracked.enqueue(result.unlogged)
        tracked.log("log_training_curves")
        tracked.log("log_params", {"train.precision_resolved": result.precision})
        tracked.log("log_artifact", cfg[keys.VOCABULARY_PATH], "vocabulary")
        # The whole bundle (SavedModel, .keras, vocab, manifest) as files, and the Keras
        # model as an MLflow model that `mlflow.keras.load_model` can load.
        tracked.log("log_artifact", fn_args.serving_model_dir, "model")
        tracked.log("log_keras_model", model, "minigpt")
        if not tracked.flush():
            unlogged = os.path.join(fn_args.model_run_dir, UNLOGGED_FILE)
            tracked.write_pending(unlogged)
            logger.warning(
                "MLflow at %s did not answer again before the Trainer ended: %d logging calls are not in MLflow "
                "run %s (listed in %s). The trained model is exported.",
                mlflow_cfg["tracking_uri"],
                len(tracked.pending),
                run.run_id,
                unlogged,
            )
    logger.info("Trained model exported to %s (MLflow run %s).", fn_args.serving_model_dir, run.run_id)
