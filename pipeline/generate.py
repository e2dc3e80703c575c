"""Generates text with a trained model: `python -m pipeline.generate --model M --prompt P`.

M is a model bundle directory (the Trainer's `Format-Serving` output), a registered
model (`models:/minigpt/latest`, `models:/minigpt@champion`, `models:/minigpt/3`) or a
run's model (`runs:/<run id>/minigpt-text`). `--decoder all` runs every decoder the
model knows. Each line says what its speed is: the seconds of a decoder's first call,
which compiles its decode, then the median tokens/s of the compiled calls after it
(their own tokens: a decoder that samples draws new ones each call), the text being the
first call's. It prints as quietly as pipeline/run.py; `-v` shows every library's log
lines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import List, Optional

from components.runtime.errors import first_line
from pipeline.config import PipelineConfig
from pipeline.console import configure_logging, quiet_environment

MLFLOW_SCHEMES = ("models:/", "runs:/")
# Compiled calls timed after the compiling one: the first of them still pays the process's
# warm-up (twice as slow as the next ones for the first decoder on the 2-core CPU).
REPEATS = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle directory, models:/... or runs:/...")
    parser.add_argument("--prompt", action="append", default=[], help="repeatable; default: the [BOS] prompt alone")
    parser.add_argument("--decoder", default=None, help="a decoder name, or 'all'; default: the model's own")
    parser.add_argument(
        "--num-tokens",
        type=int,
        default=None,
        help="tokens after [BOS], the prompt's included; default: the model's own setting (a bundle directory: "
        "eval.num_tokens_to_generate's default, or as many as the model's seq_len holds)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=PipelineConfig().resolved_tracking_uri(),
        help="MLflow store holding models:/ and runs:/ (default: $MLFLOW_TRACKING_URI, else make run's store)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Show every library's log lines.")
    return parser.parse_args(argv)


def load(model: str, tracking_uri: str):
    """The MiniGPTText behind `model`, a bundle directory or an MLflow model URI."""
    from components.serving.model_bundle import read_manifest
    from components.tracking.text_model import MiniGPTText, decoding_settings, default_decoder
    from pipeline.config import EvalConfig

    if model.startswith(MLFLOW_SCHEMES):
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        return mlflow.pyfunc.load_model(model).unwrap_python_model()
    from tfx.dsl.io import fileio

    if not fileio.isdir(model):  # a local folder or one in a bucket (gs://)
        raise FileNotFoundError(f"--model: {model} is neither a directory nor a models:/ or runs:/ URI")
    defaults = EvalConfig()  # a bare bundle carries no decoding settings: the config's defaults
    decoders = {name: dict(params) for name, params in defaults.decoders.items()}
    # A model trained on a shorter window than the default generation length gets its window.
    num_tokens = min(defaults.num_tokens_to_generate, read_manifest(model).model.seq_len - 1)
    settings = decoding_settings(decoders, default_decoder(decoders), num_tokens, defaults.seed)
    return MiniGPTText().load(model, settings)


def _timed(function, *args):
    """(what `function(*args)` returns, its wall seconds)."""
    start = time.perf_counter()
    return function(*args), time.perf_counter() - start


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    quiet_environment(args.verbose)  # before TensorFlow is imported
    configure_logging(args.verbose)
    try:
        text_model = load(args.model, args.tracking_uri)
    except Exception as e:  # pylint: disable=broad-except  (a path or URI the user typed)
        print(f"error: --model {args.model}: {type(e).__name__}: {first_line(e)}", file=sys.stderr)
        return 1
    if args.num_tokens is not None:
        try:
            text_model.set_num_tokens(args.num_tokens)
        except ValueError as e:
            print(f"error: --num-tokens {args.num_tokens}: {e}", file=sys.stderr)
            return 2
    decoders = text_model.decoders if args.decoder == "all" else [args.decoder]
    unknown = [d for d in decoders if d is not None and d not in text_model.decoders]
    if unknown:
        print(f"error: --decoder {unknown[0]}: not one of {', '.join(text_model.decoders)} (or 'all')", file=sys.stderr)
        return 2
    prompts = args.prompt or [""]
    for decoder in decoders:
        (texts, _), first_seconds = _timed(text_model.generate, prompts, decoder)  # compiles this decoder's decode
        calls = [_timed(text_model.generate, prompts, decoder) for _ in range(REPEATS)]
        rate = statistics.median(generated / seconds for (_, generated), seconds in calls)
        speed = f"compile + first call {first_seconds:.2f} s; then {rate:,.0f} tokens/s, median of {REPEATS} calls"
        for text in texts:
            print(f"{decoder or text_model.default_decoder:>11} ({speed}): {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
