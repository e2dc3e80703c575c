"""Typed, validated pipeline configuration loaded from `configs/*.yaml`.

One frozen dataclass per section, a comment on every field, and a loader that rejects
unknown keys and bad values *before* any pipeline work starts: a typo in a config file
should cost a second, not a ten-minute run that trains on the wrong thing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import urlparse

import yaml

from components.data.formats import RESERVED_TOKENS
from components.data_check.config import DataChecksConfig
from components.minigpt.config import ModelConfig
from components.minigpt.decoders import DEFAULT_SETTINGS as DEFAULT_DECODER_SETTINGS
from components.minigpt.decoders import check_decoders, check_fits_vocabulary
from components.minigpt.training import BACKENDS, LEARNING_RATE_SCHEDULES, PRECISIONS
from components.runtime.errors import ConfigError
from components.runtime.paths import is_uri
from components.tracking.credentials import check_settings as check_credential_settings
from components.trainer.keys import WARM_START_CHOICES

EMBEDDED_CORPUS = "embedded"
DIRECT_RUNNING_MODES = ("auto", "multi_processing", "in_memory")
VOCABULARY_SOURCES = ("learn", "champion")
DEDUP_MODES = ("none", "exact")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # "embedded" (the corpus shipped in the package), a local directory, a gs:// directory,
    # or an http(s)/file URL of a zip in SimpleBooks' layout (downloaded once, cached).
    # A relative directory in a config file is relative to that file; in --set, to the
    # current directory.
    corpus: str = EMBEDDED_CORPUS
    # Folder inside the extracted zip that holds the split files.
    zip_subdir: str = "simplebooks-92-raw"
    # Where downloaded zips are cached (keras.utils.get_file's cache_dir).
    cache_dir: str = "~/.keras"
    # Each split's file in data.corpus, or a glob of its files (e.g. "train-*.txt").
    train_file: str = "train.txt"
    # The eval split chooses the exported epoch (the lowest val perplexity), so its
    # perplexity is biased low; the test split is held out from training and that choice,
    # and the Evaluator reports its perplexity beside the eval split's. null: no test
    # split. A local run whose corpus lacks the file runs without it and says so; a
    # compiled (Vertex/Kubeflow) run cannot look, so there it must exist.
    eval_file: str = "valid.txt"
    test_file: Optional[str] = None
    # Keep lines strictly longer than this many bytes (the reference's tf.strings.length).
    min_training_seq_len: int = 450
    # Skip (and count, as lines_too_long) lines longer than this many bytes: a paragraph
    # of megabytes is a broken file (SimpleBooks' longest lines are a few KB).
    max_line_bytes: int = 1_000_000
    # sha256 (64 hex digits) the downloaded zip must have; null: not checked. A mismatch
    # removes the download and stops the run.
    sha256: Optional[str] = None
    # "exact": TextExampleGen drops exact duplicate paragraphs of the train split (one
    # copy kept); "none" (the default): the corpus is trained on as it is, and DataCheck
    # counts the duplicates (data.checks.max_duplicate_share).
    dedup: str = "none"
    # A schema file (TFDV's Schema as text proto) the token-id statistics are validated
    # against, for a user to edit; null: SchemaGen infers one from the statistics.
    schema_file: Optional[str] = None
    checks: DataChecksConfig = DataChecksConfig()


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    # Upper bound; a small corpus may yield fewer tokens and the model is sized to match.
    vocabulary_size: int = 5000
    lowercase: bool = True
    # [PAD] must be id 0 (padding); [UNK] is the tokenizer's OOV token; [BOS] starts lines.
    reserved_tokens: tuple = RESERVED_TOKENS
    # "champion": keep the champion's vocabulary (MLflow's `champion` alias) when it was
    # learned with these settings, so a run on new data stays comparable with it (the
    # blessing compares perplexities token for token) and can start from its weights
    # (train.warm_start); a first run, or other vocab settings, learn one. "learn": always
    # learn from this run's train split (a new vocabulary makes the champion incomparable:
    # such a model is not blessed).
    source: str = "champion"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    epochs: int = 6
    # Cap on steps per epoch; null trains on the whole split every epoch (each epoch
    # visits every training sequence once, in a fresh seeded random order).
    steps_per_epoch: Optional[int] = None
    # Cap on validation batches per epoch; null validates on the whole eval split.
    validation_steps: Optional[int] = None
    learning_rate: float = 0.001
    # Adam's rate over the run: "constant" (the reference's; measured better on the small
    # embedded corpus, which overfits from epoch 4) or "cosine" (from learning_rate down to
    # a tenth of it at the last step; reaches the reference's quality sooner on larger
    # corpora, BENCHMARKS.md §3: configs/simplebooks92.yaml and vertex.yaml use it).
    learning_rate_schedule: str = "constant"
    # How fast a step runs, not what it learns (BENCHMARKS.md has the figures):
    # "auto" (bf16 on a GPU or a CPU with native bf16, else float32), "float32",
    # "mixed_bfloat16" or "mixed_float16".
    precision: str = "auto"
    # The Keras backend that fits the model: "auto" (JAX where there is a GPU, else
    # TensorFlow: measured faster on CPUs), "tensorflow" or "jax" (in a child process).
    backend: str = "auto"
    # XLA-compile the training step: true, false, or null for Keras' choice (XLA on
    # GPUs and on JAX, not on a CPU-only TensorFlow, where it measured no faster).
    jit_compile: Optional[bool] = None
    # Training steps per call into the compiled step.
    steps_per_execution: int = 1
    # Top-k sample generated at the end of every epoch and logged to MLflow: its k and
    # length in tokens (a training setting: the Evaluator's decoders are eval.*).
    epoch_sample_k: int = 10
    epoch_sample_tokens: int = 80
    seed: int = 42
    # "champion": start from the champion's weights (MLflow's `champion` alias) when its
    # vocabulary and sizes are this run's, else from scratch, saying why; "none": from
    # scratch. Either way the run logs what it started from.
    warm_start: str = "none"


@dataclasses.dataclass(frozen=True)
class BlessingConfig:
    # A new model is blessed (pushed, and made MLflow's `champion`) when its held-out
    # perplexity is at most the champion's x (1 + max_increase), both measured on this
    # run's held-out split; 0: it must be no worse. With no champion yet it is blessed.
    max_increase: float = 0.0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    # Tokens generated after the [BOS] prompt by each decoder.
    num_tokens_to_generate: int = 80
    # The decoder leaderboard: samples per decoder from [BOS] (one for a deterministic
    # decoder), and as many again from prompts of the first `prompt_tokens` tokens of
    # evenly spaced test-split lines (eval-split ones without a test split).
    samples_per_decoder: int = 8
    prompt_tokens: int = 8
    # Cap on the batches each split's perplexity is computed on, of evenly spaced rows;
    # null: the whole split.
    max_batches: Optional[int] = None
    batch_size: int = 64
    # Decoder name -> its keras_hub sampler parameters; every one is run and logged.
    decoders: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: {name: dict(params) for name, params in DEFAULT_DECODER_SETTINGS.items()}
    )
    seed: int = 42
    # The decoder of the registered text model (`mlflow models serve`) when a request names
    # none; one of `decoders`. null: top_p if listed, else the first one.
    serving_decoder: Optional[str] = None
    blessing: BlessingConfig = BlessingConfig()


@dataclasses.dataclass(frozen=True)
class MlflowConfig:
    # null: $MLFLOW_TRACKING_URI if set, else a SQLite store under output_dir.
    tracking_uri: Optional[str] = None
    experiment_name: str = "minigpt"
    # How the tasks of a Kubeflow/Vertex run authenticate to the tracking server, at most
    # one way; the spec names where the credentials are, never holds them (README: Running
    # in production). All null: no credentials (this machine uses MLflow's own variables).
    # Kubeflow only: a Kubernetes Secret of the run's namespace whose keys become every
    # task's environment, named after MLflow's variables, as kubernetes_secret_keys lists:
    # [MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD] or [MLFLOW_TRACKING_TOKEN].
    kubernetes_secret: Optional[str] = None
    kubernetes_secret_keys: tuple = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    # A Secret Manager secret version, projects/P/secrets/S/versions/V (V may be latest),
    # holding a JSON object with those keys: each task reads it as its service account.
    secret_manager_secret: Optional[str] = None
    # A Google ID token for this audience, minted from each task's service account: the
    # OAuth client ID of an IAP in front of the server, or a Cloud Run server's URL.
    id_token_audience: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    # DirectRunner's mode: "multi_processing" (worker processes, every core), "in_memory"
    # (this process: no worker start-up, one core) or "auto" (in memory for a corpus of
    # at most 64 MB, where that measured faster; pipeline/beam_args.py).
    direct_running_mode: str = "auto"
    # 0 = one worker process per CPU core (multi_processing mode).
    direct_num_workers: int = 0
    # More Beam flags for every Beam step, after the runner's own (pipeline/beam_args.py),
    # e.g. ["--dataflow_service_options=enable_prime"]. The runner itself is --runner's.
    extra_args: tuple = ()


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
    # Workers of every Beam step when --runner=DataflowRunner (TextExampleGen, VocabGen,
    # Tokenize). They run the pipeline image (`cloud.image`), which holds the pinned set.
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 8
    disk_size_gb: int = 50
    # gs:// folder for Dataflow's temporary files; staging goes to <temp_location>/staging.
    temp_location: Optional[str] = None
    # The workers' service account (README: Running in production lists its roles);
    # null: the project's Compute Engine default service account.
    service_account_email: Optional[str] = None
    # The workers' subnetwork, regions/<cloud.region>/subnetworks/<name> or its full URL
    # (a Shared VPC's); null: the default network.
    subnetwork: Optional[str] = None
    # false: workers get private IPs only (their subnetwork needs Private Google Access).
    use_public_ips: bool = True


@dataclasses.dataclass(frozen=True)
class TrainerResourcesConfig:
    # What the Trainer's container asks for on Kubeflow / Vertex Pipelines.
    cpu: float = 8.0
    memory_gb: float = 32.0
    # e.g. NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_A100; "" trains on CPUs.
    accelerator_type: str = ""
    accelerator_count: int = 0
    # true: the Trainer step submits a Vertex AI custom training job on a worker pool of
    # this machine type with the accelerators above (TFX's google_cloud_ai_platform
    # extension); false: it trains inside its own pipeline container.
    vertex_training: bool = False
    vertex_machine_type: str = "n1-standard-8"
    # Machines of that job (with vertex_training: true), each with the accelerators
    # above; more than one trains data parallel across them on JAX's multi-process runtime.
    replica_count: int = 1


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    # Only read by production runs (--runner=DataflowRunner, --orchestrator=vertex|kubeflow);
    # project, region and image each have a flag of the same name that overrides them.
    project: Optional[str] = None
    region: Optional[str] = None
    # The pipeline image built from the Dockerfile (Kubeflow/Vertex tasks, Dataflow workers).
    image: Optional[str] = None
    # Vertex AI Pipelines runs and schedules run as this service account (README: Running
    # in production lists its roles); null: the project's Compute Engine default service
    # account. Kubeflow's pods run as a Kubernetes service account of their namespace
    # (pipeline-runner; a profile's default-editor in a multi-user install).
    service_account: Optional[str] = None
    dataflow: DataflowConfig = DataflowConfig()
    trainer: TrainerResourcesConfig = TrainerResourcesConfig()


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    # Where the Pusher copies a blessed model's bundle (SavedModel, .keras model,
    # vocabulary, manifest), one folder per push named by its Unix time (TensorFlow
    # Serving's layout): a local folder or a gs:// one. null: <pipeline_root>/serving.
    push_destination: Optional[str] = None


def absolute(path: str) -> str:
    """A local path made absolute; a URI kept as it is (abspath would mangle gs://b)."""
    return path if is_uri(path) else os.path.abspath(os.path.expanduser(path))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "minigpt"
    # This machine's side of a run: the MLMD store of local runs and the default MLflow store.
    output_dir: str = "outputs"
    # Every artifact and the training checkpoints; null: <output_dir>/pipeline_root.
    # A gs:// folder for Dataflow, Kubeflow and Vertex runs.
    pipeline_root: Optional[str] = None
    data: DataConfig = DataConfig()
    vocab: VocabConfig = VocabConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    mlflow: MlflowConfig = MlflowConfig()
    beam: BeamConfig = BeamConfig()
    cloud: CloudConfig = CloudConfig()
    serving: ServingConfig = ServingConfig()

    @property
    def resolved_pipeline_root(self) -> str:
        """Absolute local path or URI of the pipeline root."""
        return absolute(self.pipeline_root or os.path.join(self.output_dir, "pipeline_root"))

    @property
    def resolved_push_destination(self) -> str:
        """Absolute local path or URI of the folder blessed models are pushed to."""
        return absolute(self.serving.push_destination or os.path.join(self.resolved_pipeline_root, "serving"))

    @property
    def checkpoint_root(self) -> str:
        """Beside the artifacts, so a Trainer restarted in a new container resumes from them."""
        return os.path.join(self.resolved_pipeline_root, "checkpoints")

    @property
    def compilation_cache_dir(self) -> Optional[str]:
        """JAX's compiled programs, kept across runs: a rerun of the same fit skips its compile.
        None under a bucket pipeline root (Vertex), where JAX's cache is not tried."""
        root = self.resolved_pipeline_root
        return None if is_uri(root) else os.path.join(root, "jax_compilation_cache")

    @property
    def metadata_path(self) -> str:
        return os.path.join(absolute(self.output_dir), "metadata.sqlite")

    def resolved_tracking_uri(self) -> str:
        """Config value, else $MLFLOW_TRACKING_URI, else a SQLite file in output_dir."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return "sqlite:///" + os.path.join(absolute(self.output_dir), "mlflow.db")


def flatten(cfg: Any, prefix: str = "") -> dict:
    """PipelineConfig -> {'train.batch_size': 64, 'eval.decoders.beam': {'num_beams': 10}, ...}.

    The dotted names are the ones `--set` takes and MLflow shows as params; a mapping
    field (the decoders) gives one entry per key.
    """
    flat = {}
    for field in dataclasses.fields(cfg):
        name, value = prefix + field.name, getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, Mapping):
            flat.update({f"{name}.{key}": dict(item) for key, item in value.items()})
        else:
            flat[name] = value
    return flat


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, without what a config file never needs and a hostile one abuses:
    anchors and aliases (`*name`: a few lines that expand to billions of values, the
    "billion laughs") and a key given twice in one mapping (YAML keeps the last silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not allowed in a config", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """`problem (line N)` of a YAML error, without PyYAML's multi-line context."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or error.__class__.__name__}{where}"


def load_config(
    path: Optional[str] = None, overrides: Sequence[str] = (), settings: Optional[Mapping[str, str]] = None
) -> PipelineConfig:
    """Reads a YAML config, applies `key=value` overrides and validates the result.

    `settings` maps dotted keys to string values set as they are (command-line flags such
    as --project, whose values YAML must not reinterpret), after the overrides.

    Raises:
      ConfigError: naming the first bad key, for unknown keys, wrong types and bad values.
    """
    raw: dict = {}
    if path:
        if not os.path.isfile(path):
            raise ConfigError("--config", f"file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            try:
                raw = yaml.load(f, Loader=StrictLoader) or {}  # noqa: S506 (a SafeLoader)
            except yaml.YAMLError as e:
                raise ConfigError(path, f"is not a valid config file: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(path, "must hold a mapping of sections")
        _resolve_relative_corpus(raw, os.path.dirname(os.path.abspath(path)))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "overrides must look like section.key=value")
        try:
            value = yaml.load(text, Loader=StrictLoader) if text.strip() else None  # noqa: S506
        except yaml.YAMLError as e:
            raise ConfigError(item, f"is not a valid YAML value: {_yaml_problem(e)}") from None
        _set_path(raw, key.strip(), value)
    for key, value in (settings or {}).items():
        _set_path(raw, key, value)
    cfg = _build(PipelineConfig, raw, "")
    validate(cfg)
    return cfg


def _resolve_relative_corpus(raw: dict, config_dir: str) -> None:
    """A relative local `data.corpus` in a config file names a folder beside that file."""
    data = raw.get("data")
    corpus = data.get("corpus") if isinstance(data, dict) else None
    if (
        isinstance(corpus, str)
        and corpus not in ("", EMBEDDED_CORPUS)
        and not urlparse(corpus).scheme
        and not os.path.isabs(os.path.expanduser(corpus))
    ):
        data["corpus"] = os.path.normpath(os.path.join(config_dir, corpus))


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"{part!r} is a value, not a section")
    node[parts[-1]] = value


def _build(cls, raw: Mapping[str, Any], prefix: str):
    """Builds dataclass `cls` from `raw`, rejecting unknown keys and wrong types."""
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix.rstrip(".") or "<root>", "must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(prefix + str(key), f"unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, field in fields.items():
        if name not in raw:
            continue
        value, key = raw[name], prefix + name
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key + ".")
        else:
            kwargs[name] = _coerce(key, value, default, field)
    return cls(**kwargs)


def _coerce(key: str, value: Any, default: Any, field: dataclasses.Field) -> Any:
    optional = "Optional" in str(field.type)
    if value is None:
        if optional:
            return None
        raise ConfigError(key, "must be set (null is not allowed here)")
    if isinstance(default, bool) or "bool" in str(field.type):
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
    elif isinstance(default, int) or "int" in str(field.type):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str) or field.type == "Optional[str]":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
    elif isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        value = tuple(value)
    elif isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a mapping, got {value!r}")
    return value


def _positive(key: str, value: Optional[float], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(key, f"must be positive, got {value!r}")


def validate(cfg: PipelineConfig) -> None:
    """Checks values that types alone do not catch; raises ConfigError on the first."""
    for section, names in {
        "model": ("seq_len", "embed_dim", "ff_dim", "num_heads", "num_layers"),
        "train": (
            "batch_size",
            "epochs",
            "learning_rate",
            "epoch_sample_k",
            "epoch_sample_tokens",
            "steps_per_execution",
        ),
        "eval": ("num_tokens_to_generate", "batch_size", "samples_per_decoder", "prompt_tokens"),
    }.items():
        for name in names:
            _positive(f"{section}.{name}", getattr(getattr(cfg, section), name))
    _positive("train.steps_per_epoch", cfg.train.steps_per_epoch, allow_none=True)
    _positive("train.validation_steps", cfg.train.validation_steps, allow_none=True)
    _positive("eval.max_batches", cfg.eval.max_batches, allow_none=True)
    if cfg.data.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", cfg.data.sha256):
        raise ConfigError("data.sha256", "must be 64 lowercase hex digits (sha256sum's output) or null")
    if cfg.data.min_training_seq_len < 0:
        raise ConfigError("data.min_training_seq_len", f"must be >= 0, got {cfg.data.min_training_seq_len}")
    if cfg.data.max_line_bytes <= cfg.data.min_training_seq_len:
        raise ConfigError("data.max_line_bytes", "must be larger than data.min_training_seq_len")
    if cfg.data.dedup not in DEDUP_MODES:
        raise ConfigError("data.dedup", f"must be one of {', '.join(DEDUP_MODES)}, got {cfg.data.dedup!r}")
    for field in dataclasses.fields(cfg.data.checks):
        value = getattr(cfg.data.checks, field.name)
        if not 0 <= value <= 1:
            raise ConfigError(f"data.checks.{field.name}", f"must be between 0 and 1, got {value}")
    if any(arg.startswith("--runner") for arg in cfg.beam.extra_args):
        raise ConfigError("beam.extra_args", "must not name a runner: use run.py's --runner flag")
    if cfg.beam.direct_running_mode not in DIRECT_RUNNING_MODES:
        raise ConfigError("beam.direct_running_mode", f"must be one of {', '.join(DIRECT_RUNNING_MODES)}")
    if cfg.beam.direct_num_workers < 0:
        raise ConfigError("beam.direct_num_workers", "must be >= 0 (0 = one per core)")
    # keras_hub uses head size embed_dim // num_heads (85 in the reference's 256 / 3).
    if cfg.model.num_heads > cfg.model.embed_dim:
        raise ConfigError(
            "model.num_heads",
            f"{cfg.model.num_heads} heads leave no room in embed_dim {cfg.model.embed_dim}",
        )
    reserved = cfg.vocab.reserved_tokens
    if len(set(reserved)) != len(reserved) or reserved[:1] != ("[PAD]",):
        raise ConfigError("vocab.reserved_tokens", f"must be distinct and start with [PAD], got {list(reserved)}")
    missing = [t for t in RESERVED_TOKENS if t not in reserved]
    if missing:
        raise ConfigError("vocab.reserved_tokens", f"must include {missing}")
    if cfg.vocab.vocabulary_size <= len(reserved):
        raise ConfigError(
            "vocab.vocabulary_size",
            f"must be larger than the {len(reserved)} reserved tokens, got {cfg.vocab.vocabulary_size}",
        )
    for name, choices in (
        ("backend", BACKENDS),
        ("precision", PRECISIONS),
        ("learning_rate_schedule", LEARNING_RATE_SCHEDULES),
        ("warm_start", WARM_START_CHOICES),
    ):
        value = getattr(cfg.train, name)
        if value not in choices:
            raise ConfigError(f"train.{name}", f"must be one of {', '.join(choices)}, got {value!r}")
    if cfg.vocab.source not in VOCABULARY_SOURCES:
        raise ConfigError("vocab.source", f"must be one of {', '.join(VOCABULARY_SOURCES)}, got {cfg.vocab.source!r}")
    for key, num_tokens in (
        ("eval.num_tokens_to_generate", cfg.eval.num_tokens_to_generate),
        ("train.epoch_sample_tokens", cfg.train.epoch_sample_tokens),
    ):
        if num_tokens + 1 > cfg.model.seq_len:
            raise ConfigError(key, f"[BOS] + {num_tokens} tokens exceed model.seq_len {cfg.model.seq_len}")
    if cfg.eval.serving_decoder is not None and cfg.eval.serving_decoder not in cfg.eval.decoders:
        raise ConfigError(
            "eval.serving_decoder",
            f"{cfg.eval.serving_decoder!r} is not in eval.decoders ({', '.join(cfg.eval.decoders)})",
        )
    if not cfg.eval.blessing.max_increase >= 0:
        raise ConfigError(
            "eval.blessing.max_increase",
            f"must be >= 0 (0: no worse than the champion), got {cfg.eval.blessing.max_increase}",
        )
    if cfg.eval.prompt_tokens >= cfg.eval.num_tokens_to_generate:
        raise ConfigError(
            "eval.prompt_tokens",
            f"{cfg.eval.prompt_tokens} leaves no room to generate within eval.num_tokens_to_generate "
            f"{cfg.eval.num_tokens_to_generate}: make it smaller",
        )
    # The learned vocabulary may come out smaller; the Trainer checks again against it.
    check_fits_vocabulary(
        "train.epoch_sample_k", cfg.train.epoch_sample_k, cfg.vocab.vocabulary_size, "vocab.vocabulary_size"
    )
    check_decoders(cfg.eval.decoders, cfg.vocab.vocabulary_size, "vocab.vocabulary_size")
    for field in ("train_file", "eval_file", "corpus"):
        if not getattr(cfg.data, field):
            raise ConfigError(f"data.{field}", "must not be empty")
    if is_uri(cfg.output_dir):
        raise ConfigError(
            "output_dir",
            f"must be a local folder (it holds this machine's MLMD and MLflow stores), got {cfg.output_dir!r}; "
            "put a cloud run's artifacts in pipeline_root",
        )
    _check_cloud(cfg.cloud)
    mlflow = cfg.mlflow
    check_credential_settings(
        mlflow.kubernetes_secret, mlflow.kubernetes_secret_keys, mlflow.secret_manager_secret, mlflow.id_token_audience
    )
    if cfg.cloud.trainer.replica_count > 1 and cfg.train.backend == "tensorflow":
        raise ConfigError("train.backend", "the Trainer's replicas train on JAX together: set auto or jax")
    if cfg.mlflow.tracking_uri and urlparse(cfg.mlflow.tracking_uri).password:
        # The URI is logged as a param and written into compiled specs.
        raise ConfigError(
            "mlflow.tracking_uri",
            "holds a password; give credentials through MLflow's environment variables "
            "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN), never in a config",
        )


# A Google service account's email: a project's own (NAME@PROJECT.iam.gserviceaccount.com)
# or a default one (...@developer.gserviceaccount.com, ...@appspot.gserviceaccount.com).
_SERVICE_ACCOUNT = re.compile(r"[^@\s]+@[^@\s]+\.gserviceaccount\.com")
# Dataflow's --subnetwork: regions/REGION/subnetworks/NAME, or the full Compute Engine URL.
_SUBNETWORK = re.compile(
    r"(?:https://www\.googleapis\.com/compute/v1/projects/[^/]+/)?regions/([^/]+)/subnetworks/[^/]+"
)


# The machine family Vertex AI attaches each GPU model to (Vertex AI's "Configure compute
# resources for custom training" table, 2026): an L4 on an n1 machine is refused at submit.
GPU_MACHINE_FAMILIES = {
    "NVIDIA_L4": "g2",
    "NVIDIA_TESLA_A100": "a2",
    "NVIDIA_A100_80GB": "a2",
    "NVIDIA_H100_80GB": "a3",
    "NVIDIA_H100_MEGA_80GB": "a3",
    "NVIDIA_H200_141GB": "a3",
    "NVIDIA_TESLA_T4": "n1",
    "NVIDIA_TESLA_V100": "n1",
    "NVIDIA_TESLA_P100": "n1",
    "NVIDIA_TESLA_P4": "n1",
}


def _check_vertex_training(cloud: CloudConfig) -> None:
    """A Vertex AI training job needs a project and region, and its GPU a machine of the
    family that GPU comes in: both fail at submit otherwise, after every step before it."""
    for key, value in (("cloud.project", cloud.project), ("cloud.region", cloud.region)):
        if not value:
            raise ConfigError(key, "cloud.trainer.vertex_training submits a Vertex AI job: set the project and region")
    trainer = cloud.trainer
    family = GPU_MACHINE_FAMILIES.get(trainer.accelerator_type or "")
    if family and not trainer.vertex_machine_type.startswith(f"{family}-"):
        raise ConfigError(
            "cloud.trainer.vertex_machine_type",
            f"{trainer.vertex_machine_type} cannot carry {trainer.accelerator_type}, which Vertex AI attaches to "
            f"{family}-* machines only",
        )


def _check_cloud(cloud: CloudConfig) -> None:
    for name in ("max_num_workers", "disk_size_gb"):
        _positive(f"cloud.dataflow.{name}", getattr(cloud.dataflow, name))
    for name in ("cpu", "memory_gb", "replica_count"):
        _positive(f"cloud.trainer.{name}", getattr(cloud.trainer, name))
    trainer = cloud.trainer
    if trainer.replica_count > 1 and not trainer.vertex_training:
        raise ConfigError(
            "cloud.trainer.replica_count", "more than one replica needs cloud.trainer.vertex_training: true"
        )
    if bool(trainer.accelerator_type) != (trainer.accelerator_count > 0):
        raise ConfigError(
            "cloud.trainer.accelerator_count",
            f"set accelerator_type and a positive accelerator_count together, got "
            f"{trainer.accelerator_type!r} x {trainer.accelerator_count}",
        )
    if trainer.vertex_training:
        _check_vertex_training(cloud)
    temp = cloud.dataflow.temp_location
    if temp is not None and not temp.startswith("gs://"):
        raise ConfigError("cloud.dataflow.temp_location", f"must be a gs:// folder, got {temp!r}")
    for key, email in (
        ("cloud.service_account", cloud.service_account),
        ("cloud.dataflow.service_account_email", cloud.dataflow.service_account_email),
    ):
        if email is not None and not _SERVICE_ACCOUNT.fullmatch(email):
            raise ConfigError(
                key, f"must be a service account's email (name@project.iam.gserviceaccount.com), got {email!r}"
            )
    subnetwork = cloud.dataflow.subnetwork
    if subnetwork is not None:
        match = _SUBNETWORK.fullmatch(subnetwork)
        if not match or (cloud.region and match.group(1) != cloud.region):
            raise ConfigError(
                "cloud.dataflow.subnetwork",
                f"must be regions/{cloud.region or '<region>'}/subnetworks/<name> or its full URL "
                f"(Dataflow's workers run in cloud.region), got {subnetwork!r}",
            )
