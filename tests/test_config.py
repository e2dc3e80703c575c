import os
import time

import pytest

from components.runtime.errors import ConfigError
from pipeline.config import PipelineConfig, flatten, load_config
from tests.conftest import REPO_ROOT, TINY_CONFIG, TINY_CORPUS

CONFIGS = os.path.join(REPO_ROOT, "configs")


def test_defaults_are_the_reference_hyperparameters():
    cfg = load_config(os.path.join(CONFIGS, "default.yaml"))
    assert (cfg.train.batch_size, cfg.model.seq_len, cfg.data.min_training_seq_len) == (64, 128, 450)
    assert (cfg.model.embed_dim, cfg.model.ff_dim, cfg.model.num_heads, cfg.model.num_layers) == (256, 256, 3, 2)
    assert (cfg.vocab.vocabulary_size, cfg.eval.num_tokens_to_generate) == (5000, 80)
    assert cfg.train.epochs == PipelineConfig().train.epochs == 6  # the reference's schedule
    assert cfg.vocab.reserved_tokens == ("[PAD]", "[UNK]", "[BOS]")
    assert set(cfg.eval.decoders) == {"greedy", "beam", "random", "top_k", "top_p", "contrastive"}
    assert cfg.eval.decoders["beam"] == {"num_beams": 10}
    assert cfg.eval.decoders["top_k"] == {"k": 10} and cfg.eval.decoders["top_p"] == {"p": 0.5}
    assert cfg.data.corpus == "embedded"


@pytest.mark.parametrize("name", ["default.yaml", "simplebooks92.yaml", "tiny.yaml", "vertex.yaml"])
def test_shipped_configs_load(name):
    load_config(os.path.join(CONFIGS, name))


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["train.epochs=2", "train.steps_per_epoch=null", "eval.decoders={greedy: {}}"])
    assert cfg.train.epochs == 2 and cfg.train.steps_per_epoch is None
    assert dict(cfg.eval.decoders) == {"greedy": {}}


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.batch_sise=3", "train.batch_sise"),
        ("trian.epochs=3", "trian"),
        ("train.batch_size=-1", "train.batch_size"),
        ("model.seq_len=0", "model.seq_len"),
        ("train.epochs=two", "train.epochs"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("train.learning_rate_schedule=linear", "train.learning_rate_schedule"),
        ("train.learning_rate_schedule=null", "train.learning_rate_schedule"),
        ("vocab.vocabulary_size=3", "vocab.vocabulary_size"),
        ("vocab.reserved_tokens=[[UNK], [PAD], [BOS]]", "vocab.reserved_tokens"),
        ("eval.decoders={nucleus: {}}", "eval.decoders.nucleus"),
        ("eval.decoders={top_k: {kk: 3}}", "eval.decoders.top_k.kk"),
        ("eval.decoders={top_p: {p: 1.5}}", "eval.decoders.top_p.p"),
        ("eval.decoders={contrastive: {k: 3, alpha: 0}}", "eval.decoders.contrastive.alpha"),
        ("eval.decoders={top_k: {k: 2.5}}", "eval.decoders.top_k.k"),
        ("eval.decoders={greedy: []}", "eval.decoders.greedy"),
        ("eval.decoders={}", "eval.decoders"),
        ("train.epoch_sample_tokens=128", "train.epoch_sample_tokens"),
        ("train.epoch_sample_k=5001", "train.epoch_sample_k"),
        ("eval.num_tokens_to_generate=200", "eval.num_tokens_to_generate"),
        ("model.num_heads=300", "model.num_heads"),
        ("data.min_training_seq_len=-5", "data.min_training_seq_len"),
        ("lowercase", "lowercase"),
        ("output_dir=gs://bucket/out", "output_dir"),
        ("beam.extra_args=[--runner=DataflowRunner]", "beam.extra_args"),
        ("cloud.project=123", "cloud.project"),
        ("cloud.trainer.accelerator_type=NVIDIA_L4", "cloud.trainer.accelerator_count"),
        ("cloud.trainer.accelerator_count=2", "cloud.trainer.accelerator_count"),
        ("cloud.dataflow.max_num_workers=0", "cloud.dataflow.max_num_workers"),
        ("cloud.trainer.replica_count=0", "cloud.trainer.replica_count"),
        ("cloud.trainer.replica_count=2", "cloud.trainer.replica_count"),  # without vertex_training
        ("cloud.dataflow.temp_location=/tmp/x", "cloud.dataflow.temp_location"),
        ("cloud.service_account=minigpt-pipelines", "cloud.service_account"),
        ("cloud.dataflow.service_account_email=workers@example.com", "cloud.dataflow.service_account_email"),
        ("cloud.dataflow.subnetwork=my-subnet", "cloud.dataflow.subnetwork"),
        ("mlflow.tracking_uri=https://bob:secret@mlflow.example.com", "mlflow.tracking_uri"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(os.path.join(CONFIGS, "default.yaml"), [override])
    assert err.value.key == key
    assert str(err.value).startswith(f"config error: {key}: ")
    assert "\n" not in str(err.value)


def test_several_trainer_replicas_need_a_vertex_job_and_jax():
    replicas = ["cloud.trainer.replica_count=2", "cloud.trainer.vertex_training=true"]
    assert load_config(os.path.join(CONFIGS, "vertex.yaml"), replicas).cloud.trainer.replica_count == 2
    with pytest.raises(ConfigError, match="train.backend: the Trainer's replicas train on JAX together"):
        load_config(os.path.join(CONFIGS, "vertex.yaml"), [*replicas, "train.backend=tensorflow"])


def test_a_dataflow_subnetwork_is_one_of_the_workers_region():
    vertex = os.path.join(CONFIGS, "vertex.yaml")
    assert load_config(vertex).cloud.dataflow.subnetwork == "regions/us-central1/subnetworks/my-subnet"
    shared_vpc = "https://www.googleapis.com/compute/v1/projects/host/regions/us-central1/subnetworks/shared"
    assert load_config(vertex, [f"cloud.dataflow.subnetwork={shared_vpc}"]).cloud.dataflow.subnetwork == shared_vpc
    with pytest.raises(ConfigError, match="^config error: cloud.dataflow.subnetwork: must be regions/europe-west4/"):
        load_config(vertex, ["cloud.region=europe-west4"])


def test_missing_or_malformed_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: is not a valid config file: expected ',' or '\]'.*\(line 2\)"):
        load_config(str(bad))


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
beam:
  extra_args: *g
"""


@pytest.mark.parametrize(
    "text, problem",
    [
        (BILLION_LAUGHS, r"anchors and aliases \(\*name\) are not allowed in a config \(line 2\)"),
        ("beam:\n  extra_args: &x [--a]\n  direct_num_workers: 1\nmlflow: {experiment_name: *x}\n", "aliases"),
        ("train:\n  epochs: 2\n  learning_rate: 0.1\n  epochs: 3\n", r"key 'epochs' is given twice \(line 4\)"),
    ],
)
def test_hostile_or_ambiguous_yaml_is_refused_before_it_is_expanded(tmp_path, text, problem):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    started = time.time()
    with pytest.raises(ConfigError, match=problem):
        load_config(str(path))
    assert time.time() - started < 1


def test_a_malformed_override_value_names_the_override():
    with pytest.raises(ConfigError, match=r"train.epochs=\[1: is not a valid YAML value"):
        load_config(None, ["train.epochs=[1"])


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None, ["output_dir=/tmp/x"])
    assert cfg.resolved_tracking_uri() == "sqlite:////tmp/x/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://localhost:5000")
    assert cfg.resolved_tracking_uri() == "http://localhost:5000"
    cfg = load_config(None, ["mlflow.tracking_uri=sqlite:////tmp/y.db"])
    assert cfg.resolved_tracking_uri() == "sqlite:////tmp/y.db"


def test_flatten_keeps_decoders_whole():
    flat = flatten(PipelineConfig())
    assert flat["train.batch_size"] == 64
    assert flat["eval.decoders.beam"] == {"num_beams": 10}
    assert "eval.decoders.beam.num_beams" not in flat


@pytest.mark.parametrize(
    "decoders, key",
    [
        ("{top_k: {k: 5001}}", "eval.decoders.top_k.k"),
        ("{beam: {num_beams: 5001}}", "eval.decoders.beam.num_beams"),
        ("{top_p: {p: 0.5, k: 5001}}", "eval.decoders.top_p.k"),
        ("{contrastive: {k: 5001, alpha: 0.6}}", "eval.decoders.contrastive.k"),
    ],
)
def test_candidate_counts_above_the_vocabulary_fail_at_load(decoders, key):
    with pytest.raises(ConfigError) as err:
        load_config(os.path.join(CONFIGS, "default.yaml"), [f"eval.decoders={decoders}"])
    assert err.value.key == key
    assert "exceeds vocab.vocabulary_size (5000 tokens)" in str(err.value)
    # At the vocabulary size exactly, it is allowed; a smaller vocabulary moves the bar.
    load_config(os.path.join(CONFIGS, "default.yaml"), [f"eval.decoders={decoders.replace('5001', '5000')}"])
    with pytest.raises(ConfigError):
        load_config(None, ["vocab.vocabulary_size=100", "eval.decoders={top_k: {k: 101}}"])


def test_relative_corpus_in_a_config_file_is_relative_to_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anywhere but the checkout
    assert load_config(TINY_CONFIG).data.corpus == TINY_CORPUS
    moved = tmp_path / "sub" / "my.yaml"
    moved.parent.mkdir()
    moved.write_text("data:\n  corpus: corpus_here\n")
    assert load_config(str(moved)).data.corpus == str(tmp_path / "sub" / "corpus_here")
    # Values that are not local relative paths stay as written.
    for corpus in ("embedded", "gs://b/books", "https://host/books.zip", "/abs/books"):
        moved.write_text(f"data:\n  corpus: {corpus}\n")
        assert load_config(str(moved)).data.corpus == corpus
    # On the command line a relative path is relative to the current directory, as a shell user expects.
    assert load_config(TINY_CONFIG, ["data.corpus=mine"]).data.corpus == "mine"


def test_a_vertex_training_job_needs_a_project_and_a_machine_its_gpu_fits():
    """Both fail at submit otherwise, after every step before the Trainer has run."""
    vertex = os.path.join(CONFIGS, "vertex.yaml")
    job = ["cloud.trainer.vertex_training=true"]
    assert load_config(vertex, job).cloud.trainer.vertex_machine_type == "g2-standard-8"
    with pytest.raises(ConfigError, match=r"^config error: cloud.trainer.vertex_machine_type: n1-standard-8 cannot "
                       r"carry NVIDIA_L4, which Vertex AI attaches to g2-\* machines only$"):  # fmt: skip
        load_config(vertex, [*job, "cloud.trainer.vertex_machine_type=n1-standard-8"])
    t4 = ["cloud.trainer.accelerator_type=NVIDIA_TESLA_T4", "cloud.trainer.vertex_machine_type=n1-standard-8"]
    assert load_config(vertex, [*job, *t4]).cloud.trainer.accelerator_type == "NVIDIA_TESLA_T4"
    with pytest.raises(ConfigError, match=r"^config error: cloud.region: cloud.trainer.vertex_training submits"):
        load_config(vertex, [*job, "cloud.region=null"])
    # Without a Vertex job the machine type is not used: not checked.
    assert load_config(vertex, ["cloud.trainer.vertex_machine_type=n1-standard-8"])
