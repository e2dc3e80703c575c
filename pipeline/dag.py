"""The TFX pipeline: TextExampleGen -> VocabGen -> DecoderCheck -> Tokenize ->
StatisticsGen -> SchemaGen -> ExampleValidator -> DataCheck -> Trainer -> Evaluator
(blessing against the champion) -> Pusher.

`create_pipeline` is pure wiring; choosing a runner (local, Kubeflow/Vertex) is the
runner module's business.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Sequence

from tfx import v1 as tfx
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

from components.decoder_check import DecoderCheck
from components.evaluator.component import Evaluator
from components.pusher.component import Pusher
from components.text_example_gen.component import TextExampleGen
from components.tokenize.component import Tokenize
from components.tracking.credentials import auth_variables
from components.trainer import keys
from components.trainer.component import RUN_FN, Trainer
from components.vocab_gen.component import VocabGen
from pipeline.code_digest import code_digest
from pipeline.config import PipelineConfig, flatten
from pipeline.validation_dag import data_validation

# The modules TFX runs for the Trainer: the executor and `run_fn`'s module. Their import
# closure's digest is in the Trainer's cache key (TFX does not hash code it imports by
# module path), so changing any code they use retrains.
TRAINER_MODULES = ("components.trainer.executor", RUN_FN.rsplit(".", 1)[0])
# Likewise each custom component's executor (`components.runtime.cache_key`): a change to
# how it computes its output reruns it and what follows.
EXAMPLE_GEN_MODULES = ("components.text_example_gen.executor",)
VOCAB_GEN_MODULES = ("components.vocab_gen.executor",)
TOKENIZE_MODULES = ("components.tokenize.executor",)
EVALUATOR_MODULES = ("components.evaluator.executor",)
# Settings that shape the model, logged by the Trainer (and so in its cache key); the
# Evaluator logs the others: where things went, how they ran, and the evaluation.
TRAINER_PARAM_SECTIONS = ("pipeline_name", "data", "vocab", "model", "train")
EVALUATOR_PARAM_SECTIONS = ("output_dir", "pipeline_root", "eval", "mlflow", "beam", "cloud")
# The data checks' settings (data.checks.*, data.schema_file), logged by the Evaluator.
VALIDATION_PARAMS = ("data.checks.", "data.schema_file")


def training_code_digest() -> str:
    """The digest of the code the Trainer runs (`code_digest.code_digest`)."""
    return code_digest(TRAINER_MODULES)


def vertex_training_config(cfg: PipelineConfig) -> Dict[str, Any]:
    """TFX's custom_config keys that make the Trainer a Vertex AI custom job on a GPU pool."""
    trainer = cfg.cloud.trainer
    machine_spec: Dict[str, Any] = {"machine_type": trainer.vertex_machine_type}
    if trainer.accelerator_type:
        machine_spec.update(accelerator_type=trainer.accelerator_type, accelerator_count=trainer.accelerator_count)
    # Pool 0 is the chief, one replica; pool 1 the other replicas (see multiprocess.cluster_role).
    container_spec: Dict[str, Any] = {"image_uri": cfg.cloud.image}
    # The job's processes log to MLflow too: how they authenticate, by name only.
    auth = auth_variables(cfg.mlflow.secret_manager_secret, cfg.mlflow.id_token_audience)
    if auth:
        container_spec["env"] = [{"name": name, "value": value} for name, value in auth.items()]
    pools = [
        {"machine_spec": machine_spec, "replica_count": count, "container_spec": container_spec}
        for count in (1, trainer.replica_count - 1)
        if count
    ]
    job = {"project": cfg.cloud.project, "job_spec": {"worker_pool_specs": pools}}
    return {
        vertex_executor.TRAINING_ARGS_KEY: job,
        vertex_constants.ENABLE_VERTEX_KEY: True,
        vertex_constants.VERTEX_REGION_KEY: cfg.cloud.region,
    }


def _params(cfg: PipelineConfig, sections) -> dict:
    flat = flatten(cfg)
    return {k: v for k, v in flat.items() if k.split(".")[0] in sections}


def _trainer_params(cfg: PipelineConfig) -> dict:
    """The Trainer's params (in its cache key): not the data checks' settings, which gate
    training without changing what it learns."""
    return {k: v for k, v in _params(cfg, TRAINER_PARAM_SECTIONS).items() if not k.startswith(VALIDATION_PARAMS)}


def _evaluator_params(cfg: PipelineConfig) -> dict:
    """The Evaluator's params: its sections, and the data checks' settings."""
    validation = {k: v for k, v in flatten(cfg).items() if k.startswith(VALIDATION_PARAMS)}
    return {**_params(cfg, EVALUATOR_PARAM_SECTIONS), **validation}


def create_pipeline(
    cfg: PipelineConfig,
    corpus_dir: str,
    beam_pipeline_args: Sequence[str],
    metadata_connection_config: Optional[object] = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
      cfg: a validated PipelineConfig.
      corpus_dir: directory (local or gs://) holding cfg.data's split files.
      beam_pipeline_args: flags of every Beam step (`pipeline.beam_args`).
      metadata_connection_config: MLMD connection; None leaves it to the runner
        (Kubeflow/Vertex provide their own).

    Returns:
      A tfx.dsl.Pipeline with caching enabled.
    """
    # Text lines -> length filter -> gzip TFRecords of tf.Example{text} (train / eval).
    example_gen = TextExampleGen(
        input_base=corpus_dir,
        train_pattern=cfg.data.train_file,
        eval_pattern=cfg.data.eval_file,
        test_pattern=cfg.data.test_file,
        min_training_seq_len=cfg.data.min_training_seq_len,
        max_line_bytes=cfg.data.max_line_bytes,
        dedup=cfg.data.dedup,
        code_digest=code_digest(EXAMPLE_GEN_MODULES),
    )
    # WordPiece vocabulary learned from the train split (Beam counts, one learner), or
    # the champion's kept (vocab.source: champion). The champion is MLflow's `champion`
    # alias, which the steps that use it look up when they run
    # (components/tracking/champion.py): not an input, so it reruns nothing by itself.
    vocab_gen = VocabGen(
        examples=example_gen.outputs["examples"],
        source=cfg.vocab.source,
        vocabulary_size=cfg.vocab.vocabulary_size,
        reserved_tokens=cfg.vocab.reserved_tokens,
        lowercase=cfg.vocab.lowercase,
        code_digest=code_digest(VOCAB_GEN_MODULES),
    )
    # Decoder settings that the learned vocabulary cannot hold stop the run before training.
    decoder_check = DecoderCheck(
        vocabulary=vocab_gen.outputs["vocabulary"], decoders=json.dumps(cfg.eval.decoders, sort_keys=True)
    )
    # Every split as WordPiece ids, once (not in the training loop, every epoch).
    tokenize = Tokenize(
        examples=example_gen.outputs["examples"],
        vocabulary=vocab_gen.outputs["vocabulary"],
        seq_len=cfg.model.seq_len,
        lowercase=cfg.vocab.lowercase,
        code_digest=code_digest(TOKENIZE_MODULES),
    )
    # Upstream, not an input: the check must pass before any more work, but it is no
    # part of the cache key of what follows (a new decoder `k` retrains nothing).
    tokenize.add_upstream_node(decoder_check)
    # TFDV's statistics, schema and anomalies of the token ids, and the checks TFDV cannot
    # express; a failed check stops the run before the Trainer.
    validation = data_validation(cfg, example_gen, tokenize, vocab_gen.outputs["vocabulary"])
    # Fits the Keras mini-GPT; per-epoch metrics and samples go to MLflow. Only what
    # shapes the model goes in custom_config (TFX's cache key); the MLflow tracking
    # settings reach the executor through MLflow's environment variables (run.py).
    vertex_training = cfg.cloud.trainer.vertex_training
    trainer = Trainer(
        examples=tokenize.outputs["token_ids"],
        vocabulary=vocab_gen.outputs["vocabulary"],
        custom_config={
            keys.MODEL: dataclasses.asdict(cfg.model),
            keys.TRAIN: dataclasses.asdict(cfg.train),
            keys.LOWERCASE: cfg.vocab.lowercase,
            keys.PARAMS: _trainer_params(cfg),
            keys.CHECKPOINT_ROOT: cfg.checkpoint_root,
            keys.COMPILATION_CACHE_DIR: cfg.compilation_cache_dir,
            keys.CODE_DIGEST: training_code_digest(),
            **(vertex_training_config(cfg) if vertex_training else {}),
        },
        on_vertex_training=vertex_training,
    )
    # Perplexity on the eval and test splits, a sample from every decoder, and the
    # blessing against the champion; registers the model and ends the MLflow run.
    # Its tracking settings are parameters: a new tracking server reruns the evaluation
    # into it (the model stays cached).
    mlflow_config = {"tracking_uri": cfg.resolved_tracking_uri(), "experiment_name": cfg.mlflow.experiment_name}
    evaluator = Evaluator(
        examples=tokenize.outputs["token_ids"],
        model=trainer.outputs["model"],
        statistics=validation.statistics,
        anomalies=validation.anomalies,
        data_checks=validation.gate.outputs["result"],
        eval_config=dataclasses.asdict(cfg.eval),
        mlflow_config=mlflow_config,
        params=_evaluator_params(cfg),
        code_digest=code_digest(EVALUATOR_MODULES),
    )
    # A blessed model's bundle to the push destination, and MLflow's champion alias to it.
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=cfg.resolved_push_destination,
        tracking_uri=cfg.resolved_tracking_uri(),
    )
    # Upstream, not an input: the data checks gate training without entering its cache key.
    trainer.add_upstream_node(validation.gate)
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=cfg.resolved_pipeline_root,
        components=[
            *(example_gen, vocab_gen, decoder_check, tokenize),
            *validation.components,
            *(trainer, evaluator, pusher),
        ],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
