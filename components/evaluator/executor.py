"""Evaluator executor: perplexity on the eval split and a sample from every decoder."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import model_bundle
from components.formats import EVALUATION_FILE
from components.lm_data import read_labels
from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.decoders import check_decoders
from components.minigpt.decoding import make_sampler
from components.minigpt.perplexity import token_weighted_perplexity
from components.minigpt.sequences import batches, features_from_labels
from components.minigpt.tokenizer import TextCodec
from components.tracking import TRAINED_IN_RUN_TAG, PipelineRun

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
EVAL_CONFIG_KEY = "eval_config"
MLFLOW_CONFIG_KEY = "mlflow_config"
PARAMS_KEY = "params"
SPLIT = "eval"


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

        model, manifest, vocab = model_bundle.load(path_utils.serving_model_path(model_artifact.uri))
        codec = TextCodec(vocab, manifest.model.seq_len, manifest.lowercase)
        run = PipelineRun.for_pipeline_run(
            mlflow_cfg["tracking_uri"],
            mlflow_cfg["experiment_name"],
            self._context.pipeline_info.id,
            self._context.pipeline_run_id,
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
            pattern = os.path.join(artifact_utils.get_split_uri([examples], SPLIT), "*")
            labels = read_labels([pattern], manifest.model.seq_len, SPLIT)
            perplexity, num_tokens = token_weighted_perplexity(
                model,
                batches(features_from_labels(labels, codec.bos_id), labels, eval_cfg["batch_size"]),
                eval_cfg["max_batches"],
            )
            logger.info("Eval perplexity %.3f over %d tokens.", perplexity, num_tokens)
            run.log_metrics({"eval_perplexity": perplexity, "eval_tokens": num_tokens}, step=0)

            samples = _sample_every_decoder(model, codec, eval_cfg, run)
            result = {
                "perplexity": perplexity,
                "num_tokens": num_tokens,
                "samples": samples,
                "mlflow_run_id": run.run_id,
                "trained_in_mlflow_run": manifest.mlflow_run_id,
            }
            with fileio.open(os.path.join(evaluation.uri, EVALUATION_FILE), "w") as f:
                f.write(json.dumps(result, indent=2))
            evaluation.set_float_custom_property("perplexity", perplexity)
            evaluation.set_string_custom_property("mlflow_run_id", run.run_id)
        run.finish()


def _sample_every_decoder(model, codec: TextCodec, eval_cfg: Dict[str, Any], run: PipelineRun) -> Dict[str, str]:
    num_tokens = eval_cfg["num_tokens_to_generate"]
    generator = CachedGenerator(model, codec.bos_id, num_tokens)
    samples = {}
    for name, params in eval_cfg["decoders"].items():
        sampler = make_sampler(name, params, eval_cfg["seed"])
        start = time.time()
        ids = generator.generate(sampler)  # compiles, then decodes: the logged sample
        first_call = time.time() - start
        start = time.time()
        generator.generate(sampler)  # compiled: the steady-state speed
        seconds = time.time() - start
        samples[name] = codec.detokenize(ids)[0]
        logger.info("%s (%.0f tokens/s, compiled in %.1fs): %s", name, num_tokens / seconds, first_call, samples[name])
        run.log_text(samples[name] + "\n", f"samples/{name}.txt")
        run.log_metrics({f"decode_tokens_per_second.{name}": num_tokens / seconds}, step=0)
    return samples
