"""The trained model as an MLflow pyfunc: prompts in, generated text out.

So the MLflow ecosystem serves it unchanged: `mlflow.pyfunc.load_model(
"models:/minigpt@champion").predict(["the captain said"])`, or `mlflow models serve -m
models:/minigpt@champion`. The `champion` alias names the blessed model the Pusher pushed
last; `models:/minigpt/latest` (MLflow's built-in name, which is why `latest` cannot be an
alias) is the newest version, blessed or not. The Evaluator logs and registers it after scoring the decoders;
it carries the model bundle (weights, vocabulary, manifest) as an artifact, this
package as code, and the decoders' settings as a file. A request may pick any
of them with the `decoder` param.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import mlflow.pyfunc

from components.data.formats import BOS_TOKEN as BOS
from components.runtime.paths import local_path
from components.tracking.mlflow_runs import pinned_requirements

REGISTERED_MODEL = "minigpt"
LATEST = f"models:/{REGISTERED_MODEL}/latest"
CHAMPION_ALIAS = "champion"
BUNDLE_ARTIFACT = "bundle"
# The package the model ships as code: the class below and everything it imports
# (components.minigpt, components.serving, ...), so it loads where this project is not
# installed (`mlflow models serve` with its own environment).
COMPONENTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The decoders' settings, a file beside the bundle (a pyfunc model_config would also be
# logged as run params, where a rerun's different values would clash).
DECODING_ARTIFACT = "decoding"


class MiniGPTText(mlflow.pyfunc.PythonModel):
    """Generates a continuation of each prompt with the cached, compiled decoder."""

    def load_context(self, context) -> None:
        with open(context.artifacts[DECODING_ARTIFACT], encoding="utf-8") as f:
            self.load(context.artifacts[BUNDLE_ARTIFACT], json.load(f))

    def load(self, bundle_dir: str, decoding: Dict[str, Any]) -> "MiniGPTText":
        """Loads a model bundle directory with these decoding settings (see log_and_register)."""
        from components.minigpt.tokenizer import TextCodec  # pylint: disable=import-outside-toplevel
        from components.serving import model_bundle  # pylint: disable=import-outside-toplevel

        model, manifest, vocab = model_bundle.load(bundle_dir)
        self._model, self._seq_len = model, manifest.model.seq_len
        self._codec = TextCodec(vocab, manifest.model.seq_len, manifest.lowercase)
        self._config = decoding
        self.set_num_tokens(decoding["num_tokens"])
        self._samplers: Dict[str, Any] = {}
        return self

    def set_num_tokens(self, num_tokens: int) -> None:
        """Generates `num_tokens` tokens after [BOS] (the prompt's included) from now on.

        Raises:
          ValueError: [BOS] and `num_tokens` do not fit the model's position embedding.
        """
        from components.minigpt.cached_decoding import CachedGenerator  # pylint: disable=import-outside-toplevel

        if not 0 < num_tokens < self._seq_len:
            raise ValueError(
                f"[BOS] + {num_tokens} tokens do not fit this model's seq_len {self._seq_len} (the length of its "
                f"position embedding): generate 1 to {self._seq_len - 1} tokens"
            )
        config = self._config
        self._config = decoding_settings(config["decoders"], config["default_decoder"], num_tokens, config["seed"])
        self._generator = CachedGenerator(self._model, self._codec.bos_id, num_tokens)

    @property
    def num_tokens(self) -> int:
        return self._config["num_tokens"]

    @property
    def decoders(self) -> List[str]:
        return list(self._config["decoders"])

    @property
    def default_decoder(self) -> str:
        return self._config["default_decoder"]

    def _sampler(self, name: str):
        from components.minigpt.decoding import make_sampler  # pylint: disable=import-outside-toplevel

        if name not in self._config["decoders"]:
            raise ValueError(f"decoder {name!r} is not one of this model's: {', '.join(self._config['decoders'])}")
        if name not in self._samplers:  # one sampler per decoder: its compilation is reused
            self._samplers[name] = make_sampler(name, self._config["decoders"][name], self._config["seed"])
        return self._samplers[name]

    def predict(self, context, model_input: List[str], params: Optional[Dict[str, Any]] = None) -> List[str]:
        """One generated text per prompt, each starting with its prompt."""
        return self.generate(_prompts(model_input), (params or {}).get("decoder"))[0]

    def generate(self, prompts: List[str], decoder: Optional[str] = None) -> Tuple[List[str], int]:
        """(texts, how many tokens were generated) for `prompts` with `decoder` (default:
        the model's default decoder)."""
        from components.minigpt.decoding import prompt_lengths  # pylint: disable=import-outside-toplevel
        from components.minigpt.leaderboard import generated_tokens  # pylint: disable=import-outside-toplevel

        decoder = decoder or self.default_decoder
        ids = self._codec.prompt_ids(prompts, self._generator.max_length, self._config["max_prompt_tokens"])
        out = self._generator.generate_from(self._sampler(decoder), ids)
        generated = sum(len(tokens) for tokens in generated_tokens(out, prompt_lengths(ids)))
        texts = [text.removeprefix(BOS).strip() for text in self._codec.detokenize(out)]
        return texts, generated


def _prompts(model_input: Any) -> List[str]:
    """Strings from what MLflow hands `predict`: a DataFrame, a list or one string."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # pandas DataFrame: the first column
        return [str(v) for v in model_input.iloc[:, 0].tolist()]
    return [str(v) for v in model_input]


def default_decoder(decoders: Dict[str, Any]) -> str:
    """top_p where it is configured (the reference's favourite), else the first decoder."""
    return "top_p" if "top_p" in decoders else next(iter(decoders))


def decoding_settings(
    decoders: Dict[str, Dict[str, Any]], default_decoder: str, num_tokens: int, seed: int
) -> Dict[str, Any]:
    """What the text model decodes with; a prompt keeps its last num_tokens // 2 tokens."""
    return {
        "decoders": decoders,
        "default_decoder": default_decoder,
        "num_tokens": num_tokens,
        "max_prompt_tokens": num_tokens // 2,
        "seed": seed,
    }


def log_and_register(
    bundle_dir: str, decoders: Dict[str, Dict[str, Any]], default_decoder: str, num_tokens: int, seed: int
) -> str:
    """Logs the pyfunc to the active MLflow run and registers it as a new version.

    Returns:
      The registered version, e.g. "3".
    """
    from mlflow.models import infer_signature  # pylint: disable=import-outside-toplevel

    example = ["the captain said"]
    decoding = decoding_settings(decoders, default_decoder, num_tokens, seed)
    # MLflow copies an artifact from local disk or from the URIs its own stores know (not
    # every scheme TensorFlow reads): a bundle at a URI is copied here first.
    with tempfile.TemporaryDirectory() as tmp, local_path(bundle_dir) as bundle:
        decoding_path = os.path.join(tmp, "decoding.json")
        with open(decoding_path, "w", encoding="utf-8") as f:
            json.dump(decoding, f, indent=2, sort_keys=True)
        info = mlflow.pyfunc.log_model(
            name="minigpt-text",
            python_model=MiniGPTText(),
            artifacts={BUNDLE_ARTIFACT: bundle, DECODING_ARTIFACT: decoding_path},
            code_paths=[COMPONENTS_DIR],
            signature=infer_signature(example, ["the captain said that"], params={"decoder": default_decoder}),
            registered_model_name=REGISTERED_MODEL,
            pip_requirements=pinned_requirements(
                ("keras", "keras-hub", "tensorflow", "tensorflow-text", "tfx", "mlflow")
            ),
        )
    return str(info.registered_model_version)
