"""Pipeline wiring and the Trainer's resume directory."""

import json
import os
import shutil

import pytest

from components.runtime.errors import ConfigError
from components.trainer import keys
from components.trainer.trainer_module import _checkpoint_dir
from pipeline.beam_args import IN_MEMORY_MAX_BYTES, LOCAL_SETUP_FILE, direct_runner_args
from pipeline.code_digest import code_digest
from pipeline.config import load_config
from pipeline.dag import (
    EVALUATOR_MODULES,
    EXAMPLE_GEN_MODULES,
    TOKENIZE_MODULES,
    TRAINER_MODULES,
    VOCAB_GEN_MODULES,
    create_pipeline,
    training_code_digest,
)
from pipeline.validation_dag import DATA_CHECK_MODULES
from tests.conftest import REPO_ROOT, TINY_CONFIG


def _create(cfg, corpus):
    return create_pipeline(cfg, str(corpus), direct_runner_args(cfg))


def test_pipeline_has_its_components_in_data_flow_order(tiny_corpus):
    cfg = load_config(TINY_CONFIG)
    pipeline = _create(cfg, tiny_corpus)
    assert [c.id for c in pipeline.components] == [
        "TextExampleGen",
        "VocabGen",
        "DecoderCheck",
        "Tokenize",
        "StatisticsGen",
        "SchemaGen",
        "ExampleValidator",
        "DataCheck",
        "Trainer",
        "Evaluator",
        "Pusher",
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
    # Likewise DataCheck before the Trainer: its thresholds stay out of the Trainer's cache key.
    assert "DataCheck" in {node.id for node in trainer.upstream_nodes}
    data_check = _component(pipeline, "DataCheck")
    assert data_check.inputs["vocabulary"].producer_component_id == "VocabGen"


def test_a_schema_file_replaces_the_inferred_schema(tiny_corpus):
    pipeline = _create(load_config(TINY_CONFIG, ["data.schema_file=/schemas/ids.pbtxt"]), tiny_corpus)
    ids = [c.id for c in pipeline.components]
    assert "ImportSchemaGen" in ids and "SchemaGen" not in ids
    assert _component(pipeline, "ImportSchemaGen").exec_properties["schema_file"] == "/schemas/ids.pbtxt"


def _component(pipeline, name):
    return next(c for c in pipeline.components if c.id == name)


def _trainer_cache_inputs(tiny_corpus, *overrides):
    """What TFX hashes into the Trainer's cache key that the config controls: its parameters."""
    trainer = _component(_create(load_config(TINY_CONFIG, overrides), tiny_corpus), "Trainer")
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
        "cloud.project=p",
        "cloud.image=gcr.io/p/minigpt:2",
        "cloud.dataflow.max_num_workers=100",
        "cloud.trainer.cpu=4",
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


@pytest.mark.parametrize(
    "mode, corpus_bytes, expected",
    [
        ("auto", None, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),  # size unknown
        ("auto", IN_MEMORY_MAX_BYTES, ["--direct_running_mode=in_memory", "--direct_num_workers=1"]),
        ("auto", IN_MEMORY_MAX_BYTES + 1, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
        ("in_memory", 10**12, ["--direct_running_mode=in_memory", "--direct_num_workers=1"]),
        ("multi_processing", 10, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ],
)
def test_direct_runner_mode_follows_the_corpus_size(mode, corpus_bytes, expected):
    cfg = load_config(TINY_CONFIG, [f"beam.direct_running_mode={mode}"])
    setup_file = f"--setup_file={LOCAL_SETUP_FILE}"  # so TFX does not package itself per step
    assert direct_runner_args(cfg, corpus_bytes) == ["--runner=DirectRunner", *expected, setup_file]


def test_an_unknown_running_mode_is_refused():
    with pytest.raises(ConfigError, match="beam.direct_running_mode: must be one of auto, multi_processing"):
        load_config(TINY_CONFIG, ["beam.direct_running_mode=multi_threading"])


def test_direct_runner_runs_multi_processing():
    cfg = load_config(TINY_CONFIG, ["beam.extra_args=[--direct_embed_docker_python]"])
    assert direct_runner_args(cfg) == [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        f"--setup_file={LOCAL_SETUP_FILE}",
        "--direct_embed_docker_python",
    ]


def test_bucket_paths_stay_uris_and_local_paths_become_absolute(tiny_corpus, tmp_path, monkeypatch):
    cloud = _create(load_config(TINY_CONFIG, ["pipeline_root=gs://b/root"]), tiny_corpus)
    assert cloud.pipeline_info.pipeline_root == "gs://b/root"
    custom = json.loads(_component(cloud, "Trainer").exec_properties["custom_config"])
    assert custom[keys.CHECKPOINT_ROOT] == "gs://b/root/checkpoints"
    assert custom[keys.COMPILATION_CACHE_DIR] is None  # JAX's cache is not tried on a bucket
    monkeypatch.chdir(tmp_path)
    local = load_config(TINY_CONFIG, ["output_dir=out"])
    assert local.compilation_cache_dir == str(tmp_path / "out" / "pipeline_root" / "jax_compilation_cache")
    assert _create(local, tiny_corpus).pipeline_info.pipeline_root == str(tmp_path / "out" / "pipeline_root")
    assert local.metadata_path == str(tmp_path / "out" / "metadata.sqlite")


def test_the_trainer_runs_an_installed_function_not_a_file_of_this_machine(tiny_corpus):
    trainer = _component(_create(load_config(TINY_CONFIG), tiny_corpus), "Trainer")
    assert trainer.exec_properties["run_fn"] == "components.trainer.trainer_module.run_fn"
    assert not trainer.exec_properties.get("module_file")


@pytest.mark.parametrize(
    "modules, edited, reruns",
    [
        (TRAINER_MODULES, "components/trainer/fit.py", True),  # batches, shuffling, the epoch kept
        (TRAINER_MODULES, "components/trainer/executor.py", True),  # what run_fn is given
        (TRAINER_MODULES, "components/minigpt/model.py", True),
        (TRAINER_MODULES, "components/minigpt/losses.py", True),  # imported inside a function only
        (TRAINER_MODULES, "components/evaluator/executor.py", False),
        (TRAINER_MODULES, "components/text_example_gen/executor.py", False),
        (EVALUATOR_MODULES, "components/minigpt/perplexity.py", True),
        (EVALUATOR_MODULES, "components/minigpt/leaderboard.py", True),
        (EVALUATOR_MODULES, "components/trainer/fit.py", False),
        (VOCAB_GEN_MODULES, "components/vocab_gen/learner.py", True),
        (TOKENIZE_MODULES, "components/minigpt/tokenizer.py", False),  # Tokenize has its own
        (EXAMPLE_GEN_MODULES, "components/text_example_gen/executor.py", True),
        (DATA_CHECK_MODULES, "components/data/paragraphs.py", True),
        (DATA_CHECK_MODULES, "components/trainer/fit.py", False),
    ],
)
def test_a_change_to_the_code_a_component_imports_changes_its_cache_key(tmp_path, modules, edited, reruns):
    """The digest follows a component's imports: editing any file they reach reruns it,
    editing code it never runs does not."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(os.path.join(REPO_ROOT, "components"), tmp_path / "components", ignore=ignore)
    before = code_digest(modules, root=str(tmp_path))
    assert before == code_digest(modules)  # the copy hashes as the project does
    with open(tmp_path / edited, "a", encoding="utf-8") as f:
        f.write("# a change\n")
    assert (code_digest(modules, root=str(tmp_path)) != before) is reruns


def test_the_compiled_components_carry_their_code_digests(tiny_corpus):
    pipeline = _create(load_config(TINY_CONFIG), tiny_corpus)
    for name, modules in (
        ("TextExampleGen", EXAMPLE_GEN_MODULES),
        ("VocabGen", VOCAB_GEN_MODULES),
        ("Tokenize", TOKENIZE_MODULES),
        ("Evaluator", EVALUATOR_MODULES),
        ("DataCheck", DATA_CHECK_MODULES),
    ):
        assert _component(pipeline, name).exec_properties["code_digest"] == code_digest(modules), name
    trainer_config = json.loads(_component(pipeline, "Trainer").exec_properties["custom_config"])
    assert trainer_config[keys.CODE_DIGEST] == training_code_digest()


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
