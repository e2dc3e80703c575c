"""The TFX pipeline: TextExampleGen -> VocabGen -> DecoderCheck -> Tokenize -> Trainer -> Evaluator.

`create_pipeline` is pure wiring; choosing a runner (local, Kubeflow/Vertex) is the
runner module's business.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional

from tfx import v1 as tfx

from components.decoder_check import DecoderCheck
from components.evaluator.component import Evaluator
from components.text_example_gen.component import TextExampleGen
from components.tokenize.component import Tokenize
from components.trainer import keys
from components.trainer.component import Trainer
from components.vocab_gen.component import VocabGen
from pipeline.config import PipelineConfig, flatten

TRAINER_MODULE_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "components", "trainer", "trainer_module.py"
)
# Settings that shape the model, logged by the Trainer; the Evaluator logs the others.
TRAINER_PARAM_SECTIONS = ("data", "vocab", "model", "train")
EVALUATOR_PARAM_SECTIONS = ("eval", "mlflow", "beam")


def beam_pipeline_args(cfg: PipelineConfig) -> List[str]:
    """DirectRunner in multi-processing mode unless the config names another runner."""
    args = list(cfg.beam.extra_args)
    if not any(a.startswith("--runner=") for a in args) or "--runner=DirectRunner" in args:
        args += [
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={cfg.beam.direct_num_workers}",
        ]
    return args


def _params(cfg: PipelineConfig, sections) -> dict:
    flat = flatten(cfg)
    return {k: v for k, v in flat.items() if k.split(".")[0] in sections or "." not in k}


def create_pipeline(
    cfg: PipelineConfig, corpus_dir: str, metadata_connection_config: Optional[object] = None
) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
      cfg: a validated PipelineConfig.
      corpus_dir: directory (local or gs://) holding cfg.data's split files.
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
        min_training_seq_len=cfg.data.min_training_seq_len,
    )
    # WordPiece vocabulary learned from the train split (Beam counts, one learner).
    vocab_gen = VocabGen(
        examples=example_gen.outputs["examples"],
        vocabulary_size=cfg.vocab.vocabulary_size,
        reserved_tokens=cfg.vocab.reserved_tokens,
        lowercase=cfg.vocab.lowercase,
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
    )
    # Upstream, not an input: the check must pass before any more work, but it is no
    # part of the cache key of what follows (a new decoder `k` retrains nothing).
    tokenize.add_upstream_node(decoder_check)
    # Fits the Keras mini-GPT; per-epoch metrics and samples go to MLflow. Only what
    # shapes the model goes in custom_config (TFX's cache key); the MLflow tracking
    # settings reach the executor through MLflow's environment variables (run.py).
    trainer = Trainer(
        examples=tokenize.outputs["token_ids"],
        vocabulary=vocab_gen.outputs["vocabulary"],
        module_file=TRAINER_MODULE_FILE,
        custom_config={
            keys.MODEL: dataclasses.asdict(cfg.model),
            keys.TRAIN: dataclasses.asdict(cfg.train),
            keys.LOWERCASE: cfg.vocab.lowercase,
            keys.PARAMS: _params(cfg, TRAINER_PARAM_SECTIONS),
            keys.CHECKPOINT_ROOT: os.path.join(os.path.abspath(cfg.output_dir), "checkpoints"),
        },
    )
    # Perplexity on the eval split and a sample from every decoder; ends the MLflow run.
    # Its tracking settings are parameters: a new tracking server reruns the evaluation
    # into it (the model stays cached).
    evaluator = Evaluator(
        examples=tokenize.outputs["token_ids"],
        model=trainer.outputs["model"],
        eval_config=dataclasses.asdict(cfg.eval),
        mlflow_config={"tracking_uri": cfg.resolved_tracking_uri(), "experiment_name": cfg.mlflow.experiment_name},
        params=_params(cfg, EVALUATOR_PARAM_SECTIONS),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=os.path.abspath(cfg.pipeline_root),
        components=[example_gen, vocab_gen, decoder_check, tokenize, trainer, evaluator],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args(cfg),
    )
