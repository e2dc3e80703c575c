"""Decoding speed: the cached, compiled decoder vs the reference's uncached method.

A benchmark, not a test. Both decode with the same weights (the reference model at full
size, random weights whose [PAD] logit is pushed down so that no row ends early), the
same keras_hub samplers and the same settings as `eval.decoders`, in the same run:

  uncached  the reference's `next()`: the model on the whole (1 + N)-token window for
            every new token (`decoding.UncachedGenerator`)
  cached    one key/value cache per layer, one token per step, the decode compiled once
            per sampler and shape (`cached_decoding.CachedGenerator`)

Tokens/s counts generated tokens over all rows (beam search: the returned row per
prompt, not each beam). The uncached method's step costs the same at every position (it
always runs the whole window), so it is timed over its last `--uncached-steps` steps
only: prompts prefilled up to there, same window. The cached decoder is timed over all
N tokens after a first call that compiles it (compile seconds reported apart). Each
figure is the median of `--repeats`.

Random weights give almost flat next-token distributions (top-p 0.5's nucleus: about
1,900 of 5,000 tokens), so top-p sorts every token at every step; `--model` decodes with
a trained model's weights instead (e.g. the Trainer's Format-Serving/minigpt.keras),
whose nuclei are a few dozen tokens.

Usage:
  python benchmarks/decoding.py [--backend tensorflow|jax] [--tokens 80]
      [--batch-sizes 1,16] [--decoders greedy,beam,...] [--model PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from components.minigpt.decoders import DEFAULT_SETTINGS as DECODERS  # noqa: E402  (eval.decoders' default)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    p.add_argument("--tokens", type=int, default=80, help="tokens generated after [BOS] (the window is 1 + this)")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--decoders", default=",".join(DECODERS))
    p.add_argument("--uncached-steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="a trained .keras model to decode with (default: random weights, reference sizes)")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


ARGS = parse_args()
os.environ["KERAS_BACKEND"] = ARGS.backend  # before Keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from components.minigpt.cached_decoding import CachedGenerator  # noqa: E402
from components.minigpt.decoding import UncachedGenerator, bos_prompts, make_sampler  # noqa: E402
from components.minigpt.model import PAD_ID, GPTConfig, build_model  # noqa: E402

BOS_ID = 2


def never_ends(model: keras.Model) -> keras.Model:
    """Random weights may predict [PAD], which ends a row early: push its logit down."""
    kernel, bias = model.get_layer("logits").get_weights()
    bias[PAD_ID] = -1e4
    model.get_layer("logits").set_weights([kernel, bias])
    return model


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, name: str, batch_size: int, args) -> dict:
    params = DECODERS[name]
    num_tokens = args.tokens
    cached = CachedGenerator(model, BOS_ID, num_tokens)
    sampler = make_sampler(name, params, seed=0)
    start = time.perf_counter()
    cached.generate(sampler, batch_size)  # traces and compiles
    compile_s = time.perf_counter() - start
    cached_s = timed(lambda: cached.generate(sampler, batch_size), args.repeats)

    steps = min(args.uncached_steps, num_tokens)
    prompts = bos_prompts(BOS_ID, batch_size, num_tokens + 1)
    prompts[:, 1 : num_tokens + 1 - steps] = 3  # prefilled: only the last `steps` positions are generated
    uncached = UncachedGenerator(model, BOS_ID, num_tokens)
    uncached_sampler = make_sampler(name, params, seed=0)
    uncached.generate_from(uncached_sampler, prompts)  # warm-up (eager: traces the model once)
    uncached_s = timed(lambda: uncached.generate_from(uncached_sampler, prompts), args.repeats)

    cached_tps = batch_size * num_tokens / cached_s
    uncached_tps = batch_size * steps / uncached_s
    return {
        "decoder": name,
        "batch_size": batch_size,
        "cached_tokens_per_s": round(cached_tps, 1),
        "uncached_tokens_per_s": round(uncached_tps, 2),
        "speedup": round(cached_tps / uncached_tps, 1),
        "cached_compile_s": round(compile_s, 2),
        "traces": cached.traces,
    }


def main() -> None:
    args = ARGS
    keras.utils.set_random_seed(0)
    if args.model:
        model = never_ends(keras.models.load_model(args.model, compile=False))
    else:
        model = never_ends(build_model(GPTConfig()))  # the reference's sizes: 5000 tokens, 128 window
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        for name in args.decoders.split(","):
            rows.append(measure(model, name, batch_size, args))
            print(json.dumps(rows[-1]), flush=True)
    header = (
        f"{'decoder':>12} {'batch':>5} {'cached tok/s':>13} {'uncached tok/s':>15} {'speedup':>8} {'compile s':>10}"
    )
    machine = platform.processor() or "cpu"
    weights = args.model or "random weights"
    print(f"\nbackend {keras.backend.backend()}, {args.tokens} tokens after [BOS], {weights}, {machine}")
    print(header)
    for r in rows:
        print(
            f"{r['decoder']:>12} {r['batch_size']:>5} {r['cached_tokens_per_s']:>13.1f} "
            f"{r['uncached_tokens_per_s']:>15.2f} {r['speedup']:>7.1f}x {r['cached_compile_s']:>10.2f}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"backend": keras.backend.backend(), "tokens": args.tokens, "model": args.model, "results": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
