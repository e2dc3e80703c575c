"""Evaluator executor: perplexity on the eval and test splits, a leaderboard of the
decoders, and the blessing against the champion.

The eval split chose the exported epoch (the Trainer keeps the lowest val perplexity), so
its perplexity is biased toward a good value by that choice. The test split, which
neither training nor that choice saw, gives the unbiased figure; both are reported, each
under its split's name. A corpus without a test split has only the eval split's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.data.artifact_types import DataChecks
from components.data.formats import EVALUATION_FILE
from components.data.lm_data import read_labels
from components.evaluator import blessing
from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.decoders import DECODERS, check_decoders
from components.minigpt.decoding import bos_prompts, make_sampler, prompt_lengths
from components.minigpt.leaderboard import MEASURES, eval_prompts, score, tokens_per_second
from components.minigpt.perplexity import token_weighted_perplexity
from components.minigpt.sequences import batches, features_from_labels, spread_batches
from components.minigpt.tokenizer import TextCodec
from components.runtime.pipeline_run import pipeline_run
from components.serving import model_bundle
from components.tracking import plots, text_model
from components.tracking.champion import Champion, current_champion
from components.tracking.mlflow_runs import TRAINED_IN_RUN_TAG, PipelineRun

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
STATISTICS_KEY = "statistics"
ANOMALIES_KEY = "anomalies"
DATA_CHECKS_KEY = "data_checks"
# Where the data validation's outputs go in the MLflow run.
DATA_FOLDER = "data"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
EVAL_CONFIG_KEY = "eval_config"
MLFLOW_CONFIG_KEY = "mlflow_config"
PARAMS_KEY = "params"
# The split that chose the kept epoch, and the held-out one (when the corpus has it).
SELECTION_SPLIT = "eval"
TEST_SPLIT = "test"


class Executor(base_executor.BaseExecutor):
    """Loads the trained bundle, scores it, samples with each decoder, logs to MLflow."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes `evaluation.json` and one `samples/<decoder>.txt` per decoder.

        Args:
          input_dict: `examples` (token-id Examples from Tokenize, with an `eval` split)
            and `model` (from the Trainer).
          output_dict: `evaluation`: a ModelEvaluation artifact.
          exec_properties: `eval_config` (JSON: num_tokens_to_generate, batch_size,
            max_batches, decoders, seed), `mlflow_config` (JSON: tracking_uri,
            experiment_name) and `params` (JSON: flat dict logged as MLflow params).
        """
        eval_cfg = json.loads(exec_properties[EVAL_CONFIG_KEY])
        mlflow_cfg = json.loads(exec_properties[MLFLOW_CONFIG_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model_artifact = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        blessing_artifact = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])

        model, manifest, vocab = model_bundle.load(path_utils.serving_model_path(model_artifact.uri))
        codec = TextCodec(vocab, manifest.model.seq_len, manifest.lowercase)
        run = PipelineRun.for_pipeline_run(
            mlflow_cfg["tracking_uri"], mlflow_cfg["experiment_name"], *pipeline_run(self._context)
        )
        with run.failed_on_error():
            # DecoderCheck ran this before training; kept for an Evaluator wired without it.
            check_decoders(eval_cfg["decoders"], manifest.model.vocabulary_size, "the learned vocabulary")
            if run.run_id != manifest.mlflow_run_id:
                # The Trainer was served from TFX's cache: point at the run that trained
                # the model and record what trained it (its own eval.* params are logged next).
                run.set_tag(TRAINED_IN_RUN_TAG, manifest.mlflow_run_id)
                run.log_params(manifest.params)
            run.log_params(json.loads(exec_properties[PARAMS_KEY]))
            _log_data_validation(run, input_dict)
            splits = [
                split
                for split in (SELECTION_SPLIT, TEST_SPLIT)
                if split in artifact_utils.decode_split_names(examples.split_names)
            ]
            labels = {
                split: read_labels(
                    [os.path.join(artifact_utils.get_split_uri([examples], split), "*")], manifest.model.seq_len, split
                )
                for split in splits
            }
            perplexity = {split: _perplexity(model, labels[split], codec.bos_id, eval_cfg) for split in splits}
            for split, (value, tokens) in perplexity.items():
                logger.info("%s perplexity %.3f over %d tokens.", split.capitalize(), value, tokens)
                run.log_metrics({f"{split}.perplexity": value, f"{split}.tokens": tokens}, step=0)

            prompt_split = TEST_SPLIT if TEST_SPLIT in labels else SELECTION_SPLIT
            samples, board = _decoder_leaderboard(model, codec, eval_cfg, labels[prompt_split], run)
            # Prompts in, text out, for `mlflow models serve` and pyfunc users.
            with run.resumed():
                version = text_model.log_and_register(
                    path_utils.serving_model_path(model_artifact.uri),
                    eval_cfg["decoders"],
                    eval_cfg["serving_decoder"] or text_model.default_decoder(eval_cfg["decoders"]),
                    eval_cfg["num_tokens_to_generate"],
                    eval_cfg["seed"],
                )
            logger.info("Registered as %s version %s (%s).", text_model.REGISTERED_MODEL, version, text_model.LATEST)
            # The decision is made on the held-out split (the eval split without one).
            with current_champion(mlflow_cfg["tracking_uri"]) as champion:
                scored = (prompt_split, labels[prompt_split], perplexity[prompt_split][0])
                decision = _bless(manifest, champion, vocab, *scored, codec, eval_cfg)
            logger.info("%s: %s.", "Blessed" if decision.blessed else "Not blessed", decision.reason)
            statistics = (input_dict.get(STATISTICS_KEY) or [None])[0]
            blessing.record(blessing_artifact, decision, model_artifact, version, statistics)
            run.set_tag(blessing.TAG, "blessed" if decision.blessed else "not blessed")
            run.set_tag(blessing.REASON_TAG, decision.reason)
            run.log_metrics(blessing.metrics(decision), step=0)
            result = {
                # split -> {"perplexity", "tokens"}: "eval" chose the kept epoch, "test" is held out.
                "perplexity": {split: {"perplexity": v, "tokens": n} for split, (v, n) in perplexity.items()},
                "prompt_split": prompt_split,
                "samples": samples,
                "leaderboard": board,
                "registered_model": f"models:/{text_model.REGISTERED_MODEL}/{version}",
                "blessing": {**dataclasses.asdict(decision), "registered_version": version},
                "mlflow_run_id": run.run_id,
                "trained_in_mlflow_run": manifest.mlflow_run_id,
            }
            with fileio.open(os.path.join(evaluation.uri, EVALUATION_FILE), "w") as f:
                f.write(json.dumps(result, indent=2))
            for split, (value, _) in perplexity.items():
                evaluation.set_float_custom_property(f"{split}_perplexity", value)
            evaluation.set_string_custom_property("mlflow_run_id", run.run_id)
        run.finish()


def _decoder_leaderboard(
    model, codec: TextCodec, eval_cfg: Dict[str, Any], labels: np.ndarray, run: PipelineRun
) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """Samples every decoder from [BOS] and from prompts of held-out lines (`labels`),
    scores the samples (`components.minigpt.leaderboard`) and logs them; returns the first
    [BOS] sample of each decoder (for the summary) and the leaderboard rows.

    Every decoder decodes the same batch (`count` rows from [BOS], `count` prompted), so
    their tokens/s compare; a deterministic decoder's (greedy, beam, contrastive) [BOS]
    rows are the same text, so it is scored and logged once, not counted again by
    distinct-n. Each decoder's first call compiles it; the second is the one timed,
    scored and logged, so tokens/s counts the tokens of the call it timed.
    """
    num_tokens, count = eval_cfg["num_tokens_to_generate"], eval_cfg["samples_per_decoder"]
    generator = CachedGenerator(model, codec.bos_id, num_tokens)
    prompts = np.concatenate(
        [
            bos_prompts(codec.bos_id, count, num_tokens + 1),
            eval_prompts(labels, codec.bos_id, count, eval_cfg["prompt_tokens"], num_tokens + 1),
        ]
    )
    lengths = prompt_lengths(prompts)
    first_samples, board, sample_rows = {}, [], []
    for name, params in eval_cfg["decoders"].items():
        sampler = make_sampler(name, params, eval_cfg["seed"])
        start = time.time()
        generator.generate_from(sampler, prompts)  # compiles, then decodes
        compile_seconds = time.time() - start
        start = time.time()
        ids = generator.generate_from(sampler, prompts)  # compiled: the steady-state speed, and the logged samples
        speed = tokens_per_second(ids, lengths, time.time() - start)
        kept = np.arange(len(prompts)) if DECODERS[name].seeded else np.r_[0, count : 2 * count]
        ids, kept_lengths = ids[kept], lengths[kept]
        measures = score(model, ids, kept_lengths, speed)
        texts, prompt_texts = codec.detokenize(ids), codec.detokenize(prompts[kept])
        first_samples[name] = texts[0]
        board.append({"decoder": name, **{m: round(measures[m], 4) for m in MEASURES}})
        logger.info("%s (compiled in %.1fs): %s", name, compile_seconds, board[-1])
        run.log_metrics({f"decoder.{name}.{m}": value for m, value in measures.items()}, step=0)
        run.log_text("\n\n".join(texts) + "\n", f"samples/{name}.txt")
        sample_rows += [
            {"decoder": name, "prompt": prompt, "text": text, "tokens_per_s": round(measures["tokens_per_s"], 1)}
            for prompt, text in zip(prompt_texts, texts)
        ]
    run.log_table(_columns(board), "decoder_leaderboard.json")
    run.log_table(_columns(sample_rows), "decoder_samples.json")
    if board:
        run.log_figure(plots.decoder_leaderboard(board), "plots/decoder_leaderboard.png")
    return first_samples, board


def _log_data_validation(run: PipelineRun, input_dict: Dict[str, List[types.Artifact]]) -> None:
    """The statistics, anomalies and checks of the data (when the pipeline validated it)
    as MLflow artifacts under `data/`, and each check's value as a `checks.<check>` metric."""
    for key in (STATISTICS_KEY, ANOMALIES_KEY):
        for artifact in input_dict.get(key) or []:
            run.log_artifact(artifact.uri, f"{DATA_FOLDER}/{key}")
    for artifact in input_dict.get(DATA_CHECKS_KEY) or []:
        path = os.path.join(artifact.uri, DataChecks.FILE_NAME)
        run.log_artifact(path, DATA_FOLDER)
        with fileio.open(path) as f:
            found = json.loads(f.read())["checks"]
        run.log_metrics({f"checks.{check['name']}": check["value"] for check in found}, step=0)


def _bless(
    manifest: model_bundle.Manifest,
    champion: Optional[Champion],
    vocab: List[str],
    split: str,
    labels: np.ndarray,
    candidate: float,
    codec: TextCodec,
    eval_cfg: Dict[str, Any],
) -> blessing.Decision:
    """Scores the champion on the rows of `split` the candidate was scored on, then decides."""
    max_increase = eval_cfg["blessing"]["max_increase"]
    if champion is None:
        return blessing.decide(split, candidate, None, max_increase, None)
    champion_model, champion_manifest, champion_vocab = model_bundle.load(champion.bundle_dir)
    if champion_manifest.mlflow_run_id == manifest.mlflow_run_id:  # the Trainer was cached
        why = f"this model is already the champion (version {champion.version})"
    elif champion_vocab != vocab:
        why = "the champion's vocabulary differs from this run's, so their per-token perplexities do not compare"
    elif champion_manifest.model.seq_len < labels.shape[1]:
        why = f"the champion reads {champion_manifest.model.seq_len} tokens a row, these rows have {labels.shape[1]}"
    else:
        value = _perplexity(champion_model, labels, codec.bos_id, eval_cfg)[0]
        return blessing.decide(split, candidate, value, max_increase, champion.version)
    return blessing.decide(split, candidate, None, max_increase, champion.version, why)


def _perplexity(model, labels: np.ndarray, bos_id: int, eval_cfg: Dict[str, Any]) -> Tuple[float, int]:
    """Token-weighted perplexity over a split's rows; with `max_batches`, over that many
    batches of evenly spaced rows (the rows are in sorted order: the first ones would be
    a skewed subset)."""
    batch_size = eval_cfg["batch_size"]
    labels = spread_batches(labels, eval_cfg["max_batches"], batch_size)
    return token_weighted_perplexity(model, batches(features_from_labels(labels, bos_id), labels, batch_size))


def _columns(rows: List[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """Rows of one shape -> {column: values}, the form MLflow's tables take."""
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
