"""The Trainer's run_fn on tiny data: export, MLflow logging, and resuming a killed run."""

import json
import os

import mlflow.keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient
from tfx import v1 as tfx

from components import model_bundle
from components.trainer import keys, trainer_module
from components.vocab_gen.wordpiece import learn_vocabulary, pretokenize_lines
from tests.conftest import TINY_CORPUS, read_long_lines, write_examples

EPOCHS = 3


@pytest.fixture
def fn_args_factory(tmp_path):
    """FnArgs as TFX's Trainer executor builds them, one per (simulated) pipeline run."""
    train = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    write_examples(tmp_path / "examples" / "Split-train" / "data.gz", train)
    write_examples(
        tmp_path / "examples" / "Split-eval" / "data.gz", read_long_lines(os.path.join(TINY_CORPUS, "valid.txt"))
    )
    counts = {}
    for word in pretokenize_lines(train, lowercase=True):
        counts[word] = counts.get(word, 0) + 1
    vocab_path = tmp_path / "vocab.txt"
    vocab_path.write_text("\n".join(learn_vocabulary(counts.items(), 1000, ["[PAD]", "[UNK]", "[BOS]"])) + "\n")
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"

    def make(pipeline_run_id):
        out = tmp_path / pipeline_run_id
        return tfx.components.FnArgs(
            train_files=[str(tmp_path / "examples" / "Split-train" / "*")],
            eval_files=[str(tmp_path / "examples" / "Split-eval" / "*")],
            serving_model_dir=str(out / "serving"),
            model_run_dir=str(out / "run"),
            custom_config={
                keys.MODEL: {"seq_len": 16, "embed_dim": 8, "ff_dim": 8, "num_heads": 2, "num_layers": 1},
                keys.TRAIN: {
                    "batch_size": 8,
                    "epochs": EPOCHS,
                    "steps_per_epoch": 2,
                    "validation_steps": 1,
                    "learning_rate": 0.001,
                    "shuffle_buffer": 16,
                    "epoch_sample_k": 5,
                    "seed": 1,
                },
                keys.LOWERCASE: True,
                keys.NUM_TOKENS_TO_GENERATE: 4,
                keys.MLFLOW: {"tracking_uri": tracking_uri, "experiment_name": "exp"},
                keys.PARAMS: {"train.epochs": EPOCHS},
                keys.CHECKPOINT_ROOT: str(tmp_path / "checkpoints"),
                keys.VOCABULARY_PATH: str(vocab_path),
                keys.PIPELINE_RUN_ID: pipeline_run_id,
                keys.PIPELINE_NAME: "minigpt-test",
            },
        )

    return make, MlflowClient(tracking_uri)


def _run_for(client, pipeline_run_id):
    experiment = client.get_experiment_by_name("exp")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`tfx.pipeline_run_id` = '{pipeline_run_id}'")
    return run


def test_run_fn_exports_the_bundle_and_logs_every_epoch(fn_args_factory):
    make, client = fn_args_factory
    fn_args = make("run-1")
    trainer_module.run_fn(fn_args)
    model, manifest, vocab = model_bundle.load(fn_args.serving_model_dir)
    assert os.path.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))
    assert manifest.model.vocabulary_size == len(vocab) == model.output_shape[-1]
    run = _run_for(client, "run-1")
    assert manifest.mlflow_run_id == run.info.run_id
    assert run.info.status == "RUNNING"  # the Evaluator finishes it
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2, 3]
    with open(os.path.join(fn_args.serving_model_dir, model_bundle.MANIFEST_FILE)) as f:
        assert json.load(f)["pipeline_run_id"] == "run-1"
    (logged,) = client.search_logged_models([run.info.experiment_id])
    assert (logged.name, logged.source_run_id) == ("minigpt", run.info.run_id)
    reloaded = mlflow.keras.load_model(f"models:/{logged.model_id}")
    assert reloaded.count_params() == model.count_params()
    # The SavedModel serves token ids -> logits in plain TensorFlow, without Keras or
    # tensorflow_text (no tokenizer ops in the graph).
    served = tf.saved_model.load(fn_args.serving_model_dir)
    ids = np.array([[2, 5, 9, 0]], dtype="int32")
    np.testing.assert_allclose(served.serve(ids).numpy(), model(ids), rtol=1e-4, atol=1e-5)


class _Killed(Exception):
    pass


def test_a_killed_training_resumes_from_its_last_epoch(fn_args_factory, monkeypatch):
    make, client = fn_args_factory
    log_epoch = trainer_module.MlflowEpochLogger.on_epoch_end

    def die_after_epoch_2(self, epoch, logs=None):
        log_epoch(self, epoch, logs)
        if epoch == 1:
            raise _Killed

    monkeypatch.setattr(trainer_module.MlflowEpochLogger, "on_epoch_end", die_after_epoch_2)
    with pytest.raises(_Killed):
        trainer_module.run_fn(make("attempt-1"))
    assert _run_for(client, "attempt-1").info.status == "FAILED"

    monkeypatch.setattr(trainer_module.MlflowEpochLogger, "on_epoch_end", log_epoch)
    trainer_module.run_fn(make("attempt-2"))  # a new pipeline run, same job
    retry = _run_for(client, "attempt-2")
    # Epochs 1-2 were restored from the backup; only epoch 3 ran again.
    assert [m.step for m in client.get_metric_history(retry.info.run_id, "val_loss")] == [3]
    assert not os.listdir(os.path.join(make("x").custom_config[keys.CHECKPOINT_ROOT]))
