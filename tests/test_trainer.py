"""The Trainer's run_fn on tiny data: export, MLflow logging, and resuming a killed run."""

import dataclasses
import json
import os
import subprocess
import sys

import google.auth
import keras
import mlflow.keras
import numpy as np
import pytest
import tensorflow as tf
from google.auth.credentials import AnonymousCredentials
from mlflow.tracking import MlflowClient
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.extensions.google_cloud_ai_platform import runner as vertex_runner
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import Channel, standard_artifacts

from components.data.artifact_types import Vocabulary
from components.minigpt.training import resolve_settings
from components.runtime.errors import ConfigError, InputDataError
from components.serving import model_bundle
from components.tracking.mlflow_runs import artifact_paths
from components.trainer import executor, keys, trainer_module
from components.trainer import fit as fit_module
from components.trainer.component import Trainer
from components.vocab_gen.wordpiece import learn_vocabulary, pretokenize_lines
from pipeline.config import TrainConfig, load_config
from pipeline.dag import vertex_training_config
from tests.conftest import (
    REPO_ROOT,
    TINY_CONFIG,
    TINY_CORPUS,
    free_port,
    read_long_lines,
    tokenize,
    write_token_examples,
)
from tests.ram_filesystem import ram_folder

EPOCHS = 3
SEQ_LEN = 16


@pytest.fixture
def fn_args_factory(tmp_path):
    """FnArgs as TFX's Trainer executor builds them, one per (simulated) pipeline run."""
    train = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    counts = {}
    for word in pretokenize_lines(train, lowercase=True):
        counts[word] = counts.get(word, 0) + 1
    vocab = learn_vocabulary(counts.items(), 1000, ["[PAD]", "[UNK]", "[BOS]"])
    vocab_path = tmp_path / "vocab.txt"
    vocab_path.write_text("\n".join(vocab) + "\n")
    valid = read_long_lines(os.path.join(TINY_CORPUS, "valid.txt"))
    for split, lines in (("train", train), ("eval", valid)):
        write_token_examples(tmp_path / "examples" / f"Split-{split}" / "data.gz", tokenize(lines, vocab, SEQ_LEN))
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"

    def make(pipeline_run_id, backend="auto"):
        out = tmp_path / pipeline_run_id
        return tfx.components.FnArgs(
            train_files=[str(tmp_path / "examples" / "Split-train" / "*")],
            eval_files=[str(tmp_path / "examples" / "Split-eval" / "*")],
            serving_model_dir=str(out / "serving"),
            model_run_dir=str(out / "run"),
            custom_config={
                keys.MODEL: {"seq_len": SEQ_LEN, "embed_dim": 8, "ff_dim": 8, "num_heads": 2, "num_layers": 1},
                keys.TRAIN: dataclasses.asdict(
                    TrainConfig(
                        batch_size=8,
                        epochs=EPOCHS,
                        steps_per_epoch=2,
                        validation_steps=1,
                        epoch_sample_k=5,
                        epoch_sample_tokens=4,
                        seed=1,
                        backend=backend,
                        learning_rate_schedule="cosine",  # what a larger corpus trains with
                    )
                ),
                keys.LOWERCASE: True,
                keys.MLFLOW: {"tracking_uri": tracking_uri, "experiment_name": "exp"},
                keys.PARAMS: {"train.epochs": EPOCHS},
                keys.CHECKPOINT_ROOT: str(tmp_path / "checkpoints"),
                keys.COMPILATION_CACHE_DIR: str(tmp_path / "jax_compilation_cache"),
                keys.VOCABULARY_PATH: str(vocab_path),
                keys.PIPELINE_RUN_ID: pipeline_run_id,
                keys.PIPELINE_NAME: "minigpt-test",
            },
        )

    return make, MlflowClient(tracking_uri)


def cosine_rate(step, total, peak=TrainConfig.learning_rate, floor=0.1):
    """The cosine schedule's rate after `step` of `total` steps, written out independently."""
    return peak * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * step / total)))


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
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [1, 2, 3]
    # The cosine schedule over the run's 3 epochs x 2 steps, as logged after each epoch.
    logged_rates = [m.value for m in client.get_metric_history(run.info.run_id, "train/lr")]
    assert logged_rates == pytest.approx([cosine_rate(step, total=2 * EPOCHS) for step in (2, 4, 6)])
    # The exported weights are the best epoch's, and the run says which one it was.
    history = client.get_metric_history(run.info.run_id, "val/perplexity")
    best = min(history, key=lambda m: m.value)
    assert run.data.metrics["train.best_epoch"] == best.step
    assert run.data.metrics["val.best_perplexity"] == pytest.approx(best.value)
    assert run.data.tags["minigpt.devices"] == "1"  # the local devices the fit was split over
    with open(os.path.join(fn_args.serving_model_dir, model_bundle.MANIFEST_FILE)) as f:
        assert json.load(f)["pipeline_run_id"] == "run-1"
    # What trained the model travels with it, as logged: a cached rerun's Evaluator copies it.
    assert manifest.params == {
        "train.epochs": EPOCHS,
        "model.vocabulary_size_learned": len(vocab),
        "train.backend_resolved": "tensorflow",  # "auto" on a machine without a GPU
        # "auto": what this machine trains in (bf16 on a bf16-capable CPU).
        "train.precision_resolved": resolve_settings("auto", None, 1).precision,
    }
    assert model.get_layer("logits").dtype_policy.name == manifest.params["train.precision_resolved"]
    assert run.data.params == {k: str(v) for k, v in manifest.params.items()}
    (logged,) = client.search_logged_models([run.info.experiment_id])
    assert (logged.name, logged.source_run_id) == ("minigpt", run.info.run_id)
    reloaded = mlflow.keras.load_model(f"models:/{logged.model_id}")
    assert reloaded.count_params() == model.count_params()
    # The SavedModel serves token ids -> logits in plain TensorFlow, without Keras or
    # tensorflow_text (no tokenizer ops in the graph).
    served = tf.saved_model.load(fn_args.serving_model_dir)
    ids = np.array([[2, 5, 9, 0]], dtype="int32")
    # Compared in float32: with precision auto on a bf16 CPU the logits are bfloat16.
    np.testing.assert_allclose(
        tf.cast(served.serve(ids), tf.float32), tf.cast(model(ids), tf.float32), rtol=1e-4, atol=1e-5
    )


def test_on_jax_the_fit_runs_in_a_child_process_and_tensorflow_serves_its_weights(fn_args_factory, monkeypatch):
    make, client = fn_args_factory
    # The tiny model compiles in under a second, which JAX would not cache by default.
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    fn_args = make("run-jax", backend="jax")
    trainer_module.run_fn(fn_args)
    cache_dir = fn_args.custom_config[keys.COMPILATION_CACHE_DIR]
    compiled = set(os.listdir(cache_dir))
    assert any(name.startswith("jit_") for name in compiled)
    run = _run_for(client, "run-jax")
    assert run.data.params["train.backend_resolved"] == "jax"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [1, 2, 3]
    # The cosine schedule over the run's 3 epochs x 2 steps, as logged after each epoch.
    logged_rates = [m.value for m in client.get_metric_history(run.info.run_id, "train/lr")]
    assert logged_rates == pytest.approx([cosine_rate(step, total=2 * EPOCHS) for step in (2, 4, 6)])
    assert "train.best_epoch" in run.data.metrics and run.data.metrics["model.num_parameters"] > 0
    # The child's kept weights are what this (TensorFlow) process exported and serves.
    fitted = keras.models.load_model(os.path.join(fn_args.model_run_dir, "fit", "fitted.keras"))
    served = tf.saved_model.load(fn_args.serving_model_dir)
    ids = np.array([[2, 5, 9, 0]], dtype="int32")
    np.testing.assert_allclose(
        tf.cast(served.serve(ids), tf.float32), tf.cast(fitted(ids), tf.float32), rtol=1e-4, atol=1e-5
    )
    model, manifest, _ = model_bundle.load(fn_args.serving_model_dir)
    assert manifest.params["train.backend_resolved"] == "jax"
    assert run.data.params["train.precision_resolved"] == manifest.params["train.precision_resolved"]
    # The same fit again, in a new pipeline run: every program comes from the cache
    # (a program compiled anew would add an entry).
    trainer_module.run_fn(make("run-jax-again", backend="jax"))
    assert set(os.listdir(cache_dir)) == compiled


def test_the_child_process_exchanges_files_locally_even_when_the_model_dir_is_a_bucket(tmp_path):
    """On Vertex `model_run_dir` is gs://...: the fit's files go to a local temporary folder,
    removed afterwards; a local `model_run_dir` keeps them (`fit/` above, to inspect)."""
    remote = tfx.components.FnArgs(model_run_dir="gs://bucket/run/model_run")
    with trainer_module.exchange_dir(remote, 1) as work_dir:
        assert os.path.isdir(work_dir) and "fit-process-1" in os.path.basename(work_dir)
        open(os.path.join(work_dir, "fit_request.json"), "w").close()
    assert not os.path.exists(work_dir)
    local = tfx.components.FnArgs(model_run_dir=str(tmp_path / "model_run"))
    with trainer_module.exchange_dir(local, 0) as work_dir:
        assert work_dir == str(tmp_path / "model_run" / "fit")


def test_a_data_error_in_the_child_process_is_the_same_one_line_error(fn_args_factory, tmp_path):
    make, client = fn_args_factory
    fn_args = make("run-jax-empty", backend="jax")
    fn_args.eval_files = [str(tmp_path / "nowhere" / "*")]
    with pytest.raises(InputDataError, match="No TFRecord files match"):
        trainer_module.run_fn(fn_args)
    assert _run_for(client, "run-jax-empty").info.status == "FAILED"


def test_an_epoch_sample_k_above_the_learned_vocabulary_stops_before_any_work(fn_args_factory):
    make, client = fn_args_factory
    fn_args = make("too-wide")
    fn_args.custom_config[keys.TRAIN]["epoch_sample_k"] = 5000
    with pytest.raises(ConfigError, match=r"train.epoch_sample_k: 5000 exceeds the learned vocabulary \(\d+ tokens\)"):
        trainer_module.run_fn(fn_args)
    assert client.get_experiment_by_name("exp") is None  # no MLflow run was started
    assert not os.path.exists(fn_args.serving_model_dir)


def _trainer_inputs(tmp_path, **extra_config):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    examples.set_int_custom_property("train_lines_kept", 160)
    examples.set_int_custom_property("eval_lines_too_short", 8)
    for name, value in {"sequences": 160, "tokens": 4000, "unk_tokens": 40, "truncated_sequences": 80}.items():
        examples.set_int_custom_property(f"train_{name}", value)
    examples.set_string_custom_property("train_source", "gs://b/corpus/train.txt")
    examples.set_string_custom_property("train_sha256", "ab" * 32)
    examples.set_string_custom_property("train_length_histogram", '{"0": 3, "450": 160}')
    examples.set_string_custom_property("eval_source", "gs://b/corpus/valid.txt")
    examples.set_string_custom_property("eval_sha256", "cd" * 32)
    examples.set_string_custom_property("unrelated", "x")
    vocabulary = Vocabulary()
    vocabulary.uri = str(tmp_path / "vocab")
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(tmp_path / "model"), str(tmp_path / "model_run")
    component = Trainer(
        examples=Channel(type=standard_artifacts.Examples),
        vocabulary=Channel(type=Vocabulary),
        custom_config={keys.TRAIN: {"epochs": 2}, **extra_config},
        on_vertex_training=bool(extra_config),
    )
    inputs = {"examples": [examples], "vocabulary": [vocabulary]}
    return inputs, {"model": [model], "model_run": [model_run]}, dict(component.exec_properties)


def _context(tmp_path):
    return executor.Executor.Context(
        tmp_dir=str(tmp_path / "tmp"), pipeline_info=pipeline_pb2.PipelineInfo(id="p"), pipeline_run_id="run-7"
    )


def test_executor_adds_vocabulary_run_id_line_counts_and_tracking_at_run_time(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")
    fn_args = executor.Executor(_context(tmp_path))._GetFnArgs(*_trainer_inputs(tmp_path))
    assert fn_args.train_files == [str(tmp_path / "examples" / "Split-train" / "*")]
    assert fn_args.custom_config == {
        keys.TRAIN: {"epochs": 2},
        keys.VOCABULARY_PATH: str(tmp_path / "vocab" / "vocab.txt"),
        keys.PIPELINE_RUN_ID: "run-7",
        keys.PIPELINE_NAME: "p",
        keys.MLFLOW: {"tracking_uri": "http://tracking:5000", "experiment_name": "exp"},
        keys.DATASETS: [
            {
                "split": "train",
                "source": "gs://b/corpus/train.txt",
                "sha256": "ab" * 32,
                "length_histogram": {"0": 3, "450": 160},
                "profile": {
                    "lines_kept": 160,
                    "sequences": 160,
                    "tokens": 4000,
                    "unk_tokens": 40,
                    "truncated_sequences": 80,
                    "unk_share": 0.01,
                    "truncated_share": 0.5,
                },
            },
            {
                "split": "eval",
                "source": "gs://b/corpus/valid.txt",
                "sha256": "cd" * 32,
                "length_histogram": {},
                "profile": {"lines_too_short": 8},
            },
        ],
    }


def test_executor_without_tracking_settings_names_the_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_URI not set for this component"):
        executor.Executor(_context(tmp_path))._GetFnArgs(*_trainer_inputs(tmp_path))


@pytest.mark.parametrize("replicas", [1, 3])
def test_vertex_training_submits_our_executor_to_a_gpu_pool_with_the_run_context(tmp_path, monkeypatch, replicas):
    """Up to the network call: the CustomJob TFX's Vertex client builds is what Vertex would
    get. Several replicas: the chief's pool of one, then a pool of the others, same machines."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p"))
    submitted = {}
    monkeypatch.setattr(vertex_runner, "_launch_cloud_training", lambda **job: submitted.update(job))
    cfg = load_config(
        TINY_CONFIG,
        [
            "cloud.project=p",
            "cloud.region=europe-west4",
            "cloud.image=europe-docker.pkg.dev/p/r/minigpt:1",
            "cloud.trainer.vertex_training=true",
            "cloud.trainer.vertex_machine_type=g2-standard-8",
            "cloud.trainer.accelerator_type=NVIDIA_L4",
            "cloud.trainer.accelerator_count=1",
            f"cloud.trainer.replica_count={replicas}",
        ],
    )
    inputs, outputs, exec_properties = _trainer_inputs(tmp_path, **vertex_training_config(cfg))
    executor.VertexTrainingExecutor(_context(tmp_path)).Do(inputs, outputs, exec_properties)

    assert submitted["project"] == "p" and submitted["vertex_region"] == "europe-west4"
    pools = submitted["training_job"]["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, replicas - 1][: min(replicas, 2)]
    assert all(p["machine_spec"] == pools[0]["machine_spec"] for p in pools)
    assert all(p["container_spec"] == pools[0]["container_spec"] for p in pools)  # every replica runs our executor
    pool = pools[0]
    assert pool["machine_spec"] == {
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    assert pool["container_spec"]["image_uri"] == "europe-docker.pkg.dev/p/r/minigpt:1"
    args = pool["container_spec"]["command"]
    assert args[args.index("--executor_class_path") + 1] == "components.trainer.executor.Executor"
    # The job runs outside the pipeline: the run context travels in its custom_config.
    custom_config = json.loads(json.loads(args[args.index("--exec-properties") + 1])["custom_config"])
    assert custom_config[keys.PIPELINE_RUN_ID] == "run-7"
    assert custom_config[keys.MLFLOW] == {"tracking_uri": "https://mlflow.example.com", "experiment_name": "exp"}
    assert custom_config[keys.VOCABULARY_PATH] == str(tmp_path / "vocab" / "vocab.txt")


class _Killed(Exception):
    pass


def test_a_killed_training_resumes_from_its_last_epoch(fn_args_factory, monkeypatch):
    make, client = fn_args_factory
    log_epoch = fit_module.MlflowEpochLogger.on_epoch_end

    def die_after_epoch_2(self, epoch, logs=None):
        log_epoch(self, epoch, logs)
        if epoch == 1:
            raise _Killed

    monkeypatch.setattr(fit_module.MlflowEpochLogger, "on_epoch_end", die_after_epoch_2)
    with pytest.raises(_Killed):
        trainer_module.run_fn(make("attempt-1"))
    assert _run_for(client, "attempt-1").info.status == "FAILED"

    monkeypatch.setattr(fit_module.MlflowEpochLogger, "on_epoch_end", log_epoch)
    trainer_module.run_fn(make("attempt-2"))  # a new pipeline run, same job
    retry = _run_for(client, "attempt-2")
    # Epochs 1-2 were restored from the backup; only epoch 3 ran again.
    assert [m.step for m in client.get_metric_history(retry.info.run_id, "val/loss")] == [3]
    # With the optimizer's step count: the schedule went on to its end, it did not restart.
    (rate,) = client.get_metric_history(retry.info.run_id, "train/lr")
    assert rate.value == pytest.approx(cosine_rate(2 * EPOCHS, total=2 * EPOCHS))
    assert not os.listdir(os.path.join(make("x").custom_config[keys.CHECKPOINT_ROOT]))


REPLICA = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from tfx import v1 as tfx
from components.trainer import trainer_module
trainer_module.run_fn(tfx.components.FnArgs(**json.load(open(sys.argv[1]))))
"""
# The same epochs in one process, straight through the loop the replicas run.
ONE_PROCESS = """
import json, sys
import keras
from components.data.lm_data import read_labels
from components.minigpt.model import GPTConfig
from components.minigpt.multiprocess import ClusterRole
from components.minigpt.sequences import features_from_labels
from components.minigpt.training import TrainingSettings, build_trainable_model, learning_rate_schedule
from components.trainer.fit import fit_across_processes
args = json.load(open(sys.argv[1]))
train, model_cfg = args["train"], args["model"]
keras.utils.set_random_seed(train["seed"])
data = []
for files, split in ((args["train_files"], "train"), (args["eval_files"], "eval")):
    labels = read_labels(files, model_cfg["seq_len"], split)
    data.append((features_from_labels(labels, 2), labels))
total = train["steps_per_epoch"] * train["epochs"]
rate = learning_rate_schedule(train["learning_rate"], train["learning_rate_schedule"], total)
gpt = GPTConfig(vocabulary_size=args["vocabulary_size"], **model_cfg)
model = build_trainable_model(gpt, rate, TrainingSettings("float32", None, 1))
history = fit_across_processes(model, ClusterRole("", 1, 0), data[0], data[1], train, [])
print(json.dumps([logs["loss"] for logs in history]))
"""


def _cluster_spec(ports, pool, index):
    pools = {"workerpool0": [f"127.0.0.1:{ports[0]}"], "workerpool1": [f"127.0.0.1:{ports[1]}"]}
    return json.dumps({"cluster": pools, "task": {"type": pool, "index": index}, "job": "{}"})


def _python(script, arg, **env):
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    full_env.pop("XLA_FLAGS", None)  # one CPU device per process
    return subprocess.Popen(
        [sys.executable, "-c", script, str(arg)],
        cwd=REPO_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finished(process):
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-4000:]
    return out


def test_two_replicas_train_data_parallel_and_only_the_chief_logs_and_exports(fn_args_factory, tmp_path):
    """Two real replicas of a Vertex job on this machine, each running `run_fn` with the
    CLUSTER_SPEC Vertex would give it: they join JAX's multi-process runtime through
    the chief, train each on half of every batch, and learn what one process learns on
    the same global batches; only the chief logs to MLflow and exports."""
    make, client = fn_args_factory
    fn_args = make("replicas")
    fn_args.custom_config[keys.TRAIN]["precision"] = "float32"  # exact comparison
    args_path = tmp_path / "fn_args.json"
    args_path.write_text(
        json.dumps(
            {
                f: getattr(fn_args, f)
                for f in ("train_files", "eval_files", "serving_model_dir", "model_run_dir", "custom_config")
            }
        )
    )
    ports = (free_port(), free_port())
    chief = _python(REPLICA, args_path, CLUSTER_SPEC=_cluster_spec(ports, "workerpool0", 0))
    worker = _python(REPLICA, args_path, CLUSTER_SPEC=_cluster_spec(ports, "workerpool1", 0))
    chief_log, worker_log = _finished(chief), _finished(worker)
    assert "Epoch 3/3 (process 0 of 2)" in chief_log and "val_loss" in chief_log
    assert "Process 1 of 2 trained its share" in worker_log and "val_loss" not in worker_log

    run = _run_for(client, "replicas")
    assert run.data.params["train.backend_resolved"] == "jax"  # "auto": replicas train on JAX
    assert run.data.tags["minigpt.devices"] == "2"  # one CPU device in each process
    for name in ("train/loss", "train/perplexity", "train/lr", "val/loss", "val/perplexity"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2, 3], name
    model, manifest, _ = model_bundle.load(fn_args.serving_model_dir)
    assert manifest.params["train.precision_resolved"] == "float32"
    assert model(np.array([[2, 5, 9, 0]], dtype="int32")).shape == (1, 4, manifest.model.vocabulary_size)

    train_cfg = fn_args.custom_config[keys.TRAIN]
    one_args = tmp_path / "one_process.json"
    one_args.write_text(
        json.dumps(
            {
                "train": train_cfg,
                "model": fn_args.custom_config[keys.MODEL],
                "vocabulary_size": manifest.model.vocabulary_size,
                "train_files": fn_args.train_files,
                "eval_files": fn_args.eval_files,
            }
        )
    )
    alone = json.loads(_finished(_python(ONE_PROCESS, one_args, KERAS_BACKEND="jax")).strip().splitlines()[-1])
    logged = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    np.testing.assert_allclose(logged, alone, rtol=1e-5)


def test_under_a_bucket_root_run_fn_logs_the_vocabulary_and_bundle_from_their_uris(fn_args_factory, tmp_path):
    """Under a gs:// pipeline root (every Vertex and Kubeflow run) the vocabulary, the
    model folders and the checkpoints are URIs, not local files (here on TensorFlow's
    in-memory filesystem, addressed the same way). MLflow's client uploads from local disk
    only: the run ended FAILED after the export."""
    make, client = fn_args_factory
    fn_args = make("bucket")
    cfg = fn_args.custom_config
    with ram_folder(tmp_path.name) as root:
        vocab_path = f"{root}/VocabGen/vocabulary/vocab.txt"
        fileio.makedirs(os.path.dirname(vocab_path))
        fileio.copy(cfg[keys.VOCABULARY_PATH], vocab_path)
        cfg[keys.VOCABULARY_PATH] = vocab_path
        cfg[keys.CHECKPOINT_ROOT] = f"{root}/checkpoints"
        cfg[keys.COMPILATION_CACHE_DIR] = None  # what the pipeline gives a bucket root
        fn_args.serving_model_dir = f"{root}/Trainer/model/Format-Serving"
        fn_args.model_run_dir = f"{root}/Trainer/model_run"
        trainer_module.run_fn(fn_args)

        run = _run_for(client, "bucket")
        assert run.info.status == "RUNNING"  # the Evaluator finishes it
        bundle = sorted(
            os.path.join(folder, name)[len(fn_args.serving_model_dir) + 1 :]
            for folder, _, files in fileio.walk(fn_args.serving_model_dir)
            for name in files
        )
        assert model_bundle.KERAS_MODEL_FILE in bundle and "saved_model.pb" in bundle
        logged = artifact_paths(client, run.info.run_id)
        assert "vocabulary/vocab.txt" in logged
        assert sorted(path[len("model/") :] for path in logged if path.startswith("model/")) == bundle
        (keras_model,) = client.search_logged_models([run.info.experiment_id])
        assert keras_model.name == "minigpt"
        model, manifest, vocab = model_bundle.load(fn_args.serving_model_dir)
        assert manifest.mlflow_run_id == run.info.run_id and model.output_shape[-1] == len(vocab)
