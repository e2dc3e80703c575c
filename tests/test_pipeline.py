"""Pipeline wiring and the Trainer's resume directory."""

import os

import pytest

from components.trainer import keys
from components.trainer.trainer_module import _checkpoint_dir
from pipeline.config import load_config
from pipeline.pipeline import beam_pipeline_args, create_pipeline
from tests.conftest import TINY_CONFIG


def test_pipeline_has_its_components_in_data_flow_order(tiny_corpus):
    cfg = load_config(TINY_CONFIG)
    pipeline = create_pipeline(cfg, str(tiny_corpus))
    assert [c.id for c in pipeline.components] == [
        "TextExampleGen",
        "VocabGen",
        "DecoderCheck",
        "Tokenize",
        "Trainer",
        "Evaluator",
    ]
    assert pipeline.enable_cache
    trainer = _component(pipeline, "Trainer")
    custom = trainer.exec_properties["custom_config"]
    assert '"batch_size": 16' in custom and '"seq_len": 32' in custom
    # DecoderCheck runs before Tokenize (and so the Trainer) without being an input of either.
    tokenize = _component(pipeline, "Tokenize")
    assert "DecoderCheck" in {node.id for node in tokenize.upstream_nodes}
    assert set(tokenize.inputs) == {"examples", "vocabulary"}
    assert set(trainer.inputs) == {"examples", "vocabulary"}


def _component(pipeline, name):
    return next(c for c in pipeline.components if c.id == name)


def _trainer_cache_inputs(tiny_corpus, *overrides):
    """What TFX hashes into the Trainer's cache key that the config controls: its parameters."""
    trainer = _component(create_pipeline(load_config(TINY_CONFIG, overrides), str(tiny_corpus)), "Trainer")
    return {key: str(value) for key, value in trainer.exec_properties.items()}


@pytest.mark.parametrize(
    "override",
    [
        "eval.seed=7",
        "eval.num_tokens_to_generate=5",
        "eval.max_batches=1",
        "eval.batch_size=8",
        "eval.decoders={top_k: {k: 5}}",
        "mlflow.tracking_uri=sqlite:////elsewhere/mlflow.db",
        "mlflow.experiment_name=another",
        "beam.direct_num_workers=1",
    ],
)
def test_eval_and_tracking_settings_stay_out_of_the_trainer_cache_key(tiny_corpus, override, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = _trainer_cache_inputs(tiny_corpus)
    assert _trainer_cache_inputs(tiny_corpus, override) == base
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert _trainer_cache_inputs(tiny_corpus) == base


@pytest.mark.parametrize("override", ["train.seed=7", "model.embed_dim=16", "train.epoch_sample_tokens=5"])
def test_training_settings_are_in_the_trainer_cache_key(tiny_corpus, override):
    assert _trainer_cache_inputs(tiny_corpus, override) != _trainer_cache_inputs(tiny_corpus)


def test_direct_runner_runs_multi_processing():
    cfg = load_config(TINY_CONFIG)
    assert beam_pipeline_args(cfg) == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    cfg = load_config(TINY_CONFIG, ["beam.extra_args=[--runner=DataflowRunner, --project=p]"])
    assert beam_pipeline_args(cfg) == ["--runner=DataflowRunner", "--project=p"]


class _FnArgs:
    def __init__(self, train_files):
        self.train_files = train_files


def test_resume_directory_is_stable_for_a_retry_and_new_for_other_jobs(tmp_path):
    cfg = {
        keys.MODEL: {"seq_len": 32},
        keys.TRAIN: {"epochs": 2},
        keys.VOCABULARY_PATH: "/v/vocab.txt",
        keys.CHECKPOINT_ROOT: str(tmp_path),
    }
    first = _checkpoint_dir(cfg, _FnArgs(["/e/1/Split-train/*"]))
    assert first == _checkpoint_dir(dict(cfg), _FnArgs(["/e/1/Split-train/*"]))
    assert os.path.dirname(first) == str(tmp_path)
    assert first != _checkpoint_dir({**cfg, keys.TRAIN: {"epochs": 3}}, _FnArgs(["/e/1/Split-train/*"]))
    assert first != _checkpoint_dir(cfg, _FnArgs(["/e/2/Split-train/*"]))
