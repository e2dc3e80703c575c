"""Pipeline wiring and the Trainer's resume directory."""

import os

from components.trainer import keys
from components.trainer.trainer_module import _checkpoint_dir
from pipeline.config import load_config
from pipeline.pipeline import beam_pipeline_args, create_pipeline
from tests.conftest import TINY_CONFIG


def test_pipeline_has_the_four_components_in_data_flow_order(tiny_corpus):
    cfg = load_config(TINY_CONFIG)
    pipeline = create_pipeline(cfg, str(tiny_corpus))
    assert [c.id for c in pipeline.components] == ["TextExampleGen", "VocabGen", "Trainer", "Evaluator"]
    assert pipeline.enable_cache
    trainer = pipeline.components[2]
    custom = trainer.exec_properties["custom_config"]
    assert '"batch_size": 16' in custom and '"seq_len": 32' in custom
    # Eval-only settings stay out of the Trainer's cache key.
    assert "decoders" not in custom


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
