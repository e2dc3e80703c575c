"""Trainer module file: fits the mini-GPT on the Examples and exports it.

TFX's Trainer calls `run_fn`. Settings come from `fn_args.custom_config` (built by
`pipeline/pipeline.py`), never from module constants, so one module serves every config.
tf.data and the SavedModel export are the only TensorFlow-specific parts; the model
itself is `components.minigpt`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from typing import Any, Dict

import keras
from tfx import v1 as tfx

from components import model_bundle
from components.artifact_types import read_vocabulary
from components.lm_data import read_labels
from components.minigpt.callbacks import KeepBestEpoch
from components.minigpt.decoders import check_fits_vocabulary
from components.minigpt.decoding import Generator, make_sampler
from components.minigpt.model import GPTConfig
from components.minigpt.sequences import features_from_labels
from components.minigpt.tokenizer import TextCodec
from components.minigpt.training import build_trainable_model, resolve_settings
from components.tracking import PipelineRun
from components.trainer import keys

# TFX imports this file under a generated module name; log under a stable one.
logger = logging.getLogger("components.trainer.trainer_module")


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs per-epoch metrics and a top-k text sample to the pipeline's MLflow run."""

    def __init__(self, run: PipelineRun, codec: TextCodec, num_tokens: int, k: int, seed: int):
        super().__init__()
        self._run = run
        self._codec = codec
        self._num_tokens = num_tokens
        self._sampler = make_sampler("top_k", {"k": k}, seed)
        self._generator = None
        self._epoch_start = 0.0

    def on_train_begin(self, logs: Dict[str, float] = None) -> None:
        self._generator = Generator(self.model, self._codec.bos_id, self._num_tokens)

    def on_epoch_begin(self, epoch: int, logs: Dict[str, float] = None) -> None:
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch: int, logs: Dict[str, float] = None) -> None:
        step = epoch + 1
        self._run.log_metrics({**(logs or {}), "epoch_seconds": time.time() - self._epoch_start}, step=step)
        text = self._codec.detokenize(self._generator.generate(self._sampler))[0]
        logger.info("Epoch %d top-k sample: %s", step, text)
        self._run.log_text(text + "\n", f"samples/epoch_{step:03d}.txt")


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


# TFX Trainer will call this function.
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the reference mini-GPT and exports it to `fn_args.serving_model_dir`."""
    cfg = fn_args.custom_config
    train_cfg, model_cfg = cfg[keys.TRAIN], cfg[keys.MODEL]
    vocab = read_vocabulary(cfg[keys.VOCABULARY_PATH])
    gpt = GPTConfig(vocabulary_size=len(vocab), **model_cfg)
    check_fits_vocabulary(
        "train.epoch_sample_k", train_cfg["epoch_sample_k"], gpt.vocabulary_size, "the learned vocabulary"
    )
    codec = TextCodec(vocab, gpt.seq_len, lowercase=cfg[keys.LOWERCASE])
    keras.utils.set_random_seed(train_cfg["seed"])
    train_labels = read_labels(fn_args.train_files, gpt.seq_len, "train")
    eval_labels = read_labels(fn_args.eval_files, gpt.seq_len, "eval")

    mlflow_cfg = cfg[keys.MLFLOW]
    run = PipelineRun.for_pipeline_run(
        mlflow_cfg["tracking_uri"], mlflow_cfg["experiment_name"], cfg[keys.PIPELINE_NAME], cfg[keys.PIPELINE_RUN_ID]
    )
    settings = resolve_settings(train_cfg["precision"], train_cfg["jit_compile"], train_cfg["steps_per_execution"])
    params = {
        **cfg[keys.PARAMS],
        "model.vocabulary_size_learned": gpt.vocabulary_size,
        "train.precision_resolved": settings.precision,
    }
    with run.failed_on_error():
        run.log_params(params)
        model = build_trainable_model(gpt, train_cfg["learning_rate"], settings)
        model.summary(print_fn=logger.info)
        run.log_metrics({"num_parameters": model.count_params(), **cfg.get(keys.DATA_STATS, {})}, step=0)
        best = KeepBestEpoch("val_perplexity")
        model.fit(
            features_from_labels(train_labels, codec.bos_id),
            train_labels,
            batch_size=train_cfg["batch_size"],
            shuffle=True,
            validation_data=(features_from_labels(eval_labels, codec.bos_id), eval_labels),
            validation_batch_size=train_cfg["batch_size"],
            epochs=train_cfg["epochs"],
            steps_per_epoch=train_cfg["steps_per_epoch"],
            validation_steps=train_cfg["validation_steps"],
            callbacks=[
                keras.callbacks.BackupAndRestore(_checkpoint_dir(cfg, fn_args)),
                best,
                MlflowEpochLogger(
                    run, codec, train_cfg["epoch_sample_tokens"], train_cfg["epoch_sample_k"], train_cfg["seed"]
                ),
            ],
            # A live progress bar on a terminal, one line per epoch in logs and CI.
            verbose=1 if sys.stdout.isatty() else 2,
        )
        if best.best_epoch is not None:
            logger.info("Keeping epoch %d's weights (val_perplexity %.2f).", best.best_epoch, best.best_value)
            run.log_metrics({"best_epoch": best.best_epoch, "best_val_perplexity": best.best_value}, step=0)
        model_bundle.export(
            fn_args.serving_model_dir,
            model,
            model_bundle.Manifest(gpt, cfg[keys.LOWERCASE], run.run_id, cfg[keys.PIPELINE_RUN_ID], params),
            cfg[keys.VOCABULARY_PATH],
        )
        run.log_artifact(cfg[keys.VOCABULARY_PATH], "vocabulary")
        # The whole bundle (SavedModel, .keras, vocab, manifest) as files, and the Keras
        # model as an MLflow model that `mlflow.keras.load_model` can load.
        run.log_artifact(fn_args.serving_model_dir, "model")
        run.log_keras_model(model, name="minigpt")
    logger.info("Trained model exported to %s (MLflow run %s).", fn_args.serving_model_dir, run.run_id)
