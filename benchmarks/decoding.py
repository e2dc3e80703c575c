"""Decoding speed: our cached, compiled decoder vs keras-hub's cached `generate`.

A benchmark, not a test. Every decoder of `eval.decoders` (the same keras_hub samplers
and settings), batch by batch, in the same run:

  ours       `cached_decoding.CachedGenerator` on the reference model at full size
             (random weights whose [PAD] logit is pushed down, so no row ends early)
  keras-hub  `keras_hub.models.GPT2CausalLM.generate` (its own key/value cache and
             compiled loop: `jax.jit` on JAX, a `tf.function` on TensorFlow, without XLA
             on a CPU-only machine, where Keras resolves `jit_compile="auto"` to off) on a
             same-size GPT-2: vocabulary 5000, 2 layers of 3 heads, hidden 256,
             feed-forward 256, 128 positions, random weights, no preprocessor, token-id
             inputs, `stop_token_ids=None` (GPT-2 ties its logits to the token embedding
             and normalizes first: 2.1 M parameters to our 3.4 M, the same matmul sizes)
  uncached   (`--uncached`) the reference's `next()`: the model on the whole window for
             every new token (`decoding.UncachedGenerator`)

Both cached decoders start from a [BOS]-only prompt padded to 1 + `--tokens` and
generate exactly `--tokens` tokens per row. Both get the same settings; keras-hub gets
keras_hub's sampler classes, ours `decoding.make_sampler`'s: keras_hub's top-k, and
subclasses of the others (`decoding.FASTER_SAMPLERS`): the same tokens faster (greedy,
beam, contrastive), the same distributions drawn faster (top-p, random).

Tokens/s counts generated tokens over all rows (beam search: the returned row per
prompt, not each beam). Each cached decoder is timed after a first call that compiles
it (compile seconds reported apart); ours and keras-hub's alternate call by call (the
machine may be shared), and each figure is the median of `--repeats`. The uncached
method's step costs the same at every position, so it is timed over its last
`--uncached-steps` steps only (prompts prefilled up to there, same window).

Random weights give almost flat next-token distributions (top-p 0.5's nucleus: about
1,900 of 5,000 tokens), so top-p sorts every token at every step; `--model` decodes with
a trained model's weights instead (e.g. the Trainer's Format-Serving/minigpt.keras),
whose nuclei are a few dozen tokens (keras-hub's model keeps random weights).

Usage:
  python benchmarks/decoding.py [--backend tensorflow|jax] [--tokens 80]
      [--batch-sizes 1,16] [--decoders greedy,beam,...] [--repeats 5] [--uncached]
      [--model PATH] [--json PATH]
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

from components.minigpt.decoders import DECODERS as DECODER_CLASSES  # noqa: E402
from components.minigpt.decoders import DEFAULT_SETTINGS as DECODERS  # noqa: E402  (eval.decoders' default)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    p.add_argument("--tokens", type=int, default=80, help="tokens generated after [BOS] (the window is 1 + this)")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--decoders", default=",".join(DECODERS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--uncached", action="store_true", help="also time the reference's uncached method")
    p.add_argument("--uncached-steps", type=int, default=8)
    p.add_argument("--model", help="a trained .keras model to decode with (default: random weights, reference sizes)")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


ARGS = parse_args()
os.environ["KERAS_BACKEND"] = ARGS.backend  # before Keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402

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


def keras_hub_model(cfg: GPTConfig) -> keras_hub.models.GPT2CausalLM:
    """keras-hub's GPT-2 at our model's sizes, random weights, taking token ids."""
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=cfg.vocabulary_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        hidden_dim=cfg.embed_dim,
        intermediate_dim=cfg.ff_dim,
        max_sequence_length=cfg.seq_len,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def keras_hub_sampler(name: str, seed: int) -> keras_hub.samplers.Sampler:
    """keras_hub's own sampler class for a decoder (never our subclasses), with
    `eval.decoders`' settings."""
    decoder = DECODER_CLASSES[name]
    kwargs = {**DECODERS[name], **({"seed": seed} if decoder.seeded else {})}
    return getattr(keras_hub.samplers, decoder.sampler)(**kwargs)


def median_times(fns, repeats: int) -> list:
    """Median seconds of each of `fns`, called in turn `repeats` times."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def first_call_s(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def uncached_tokens_per_s(model, name: str, batch_size: int, args) -> float:
    steps = min(args.uncached_steps, args.tokens)
    prompts = bos_prompts(BOS_ID, batch_size, args.tokens + 1)
    prompts[:, 1 : args.tokens + 1 - steps] = 3  # prefilled: only the last `steps` positions are generated
    uncached = UncachedGenerator(model, BOS_ID, args.tokens)
    sampler = make_sampler(name, DECODERS[name], seed=0)
    uncached.generate_from(sampler, prompts)  # warm-up (eager: traces the model once)
    (seconds,) = median_times([lambda: uncached.generate_from(sampler, prompts)], args.repeats)
    return batch_size * steps / seconds


def measure(model, hub_model, name: str, batch_size: int, args) -> dict:
    num_tokens = args.tokens
    ours = CachedGenerator(model, BOS_ID, num_tokens)
    sampler = make_sampler(name, DECODERS[name], seed=0)
    hub_model.compile(sampler=keras_hub_sampler(name, seed=0))  # a new sampler: a new compiled generate
    prompts = bos_prompts(BOS_ID, batch_size, num_tokens + 1)
    hub_inputs = {"token_ids": prompts, "padding_mask": prompts != PAD_ID}

    def run_ours():
        out = ours.generate(sampler, batch_size)
        assert out.shape == (batch_size, num_tokens + 1) and (out[:, 1:] != PAD_ID).all(), "ours ended early"

    def run_hub():
        out = hub_model.generate(dict(hub_inputs), stop_token_ids=None)["token_ids"]
        assert out.shape == (batch_size, num_tokens + 1)

    ours_compile_s, hub_compile_s = first_call_s(run_ours), first_call_s(run_hub)
    ours_s, hub_s = median_times([run_ours, run_hub], args.repeats)
    ours_tps, hub_tps = batch_size * num_tokens / ours_s, batch_size * num_tokens / hub_s
    row = {
        "decoder": name,
        "batch_size": batch_size,
        "ours_tokens_per_s": round(ours_tps, 1),
        "keras_hub_tokens_per_s": round(hub_tps, 1),
        "ratio": round(ours_tps / hub_tps, 2),
        "ours_compile_s": round(ours_compile_s, 2),
        "keras_hub_compile_s": round(hub_compile_s, 2),
        "traces": ours.traces,
    }
    if args.uncached:
        row["uncached_tokens_per_s"] = round(uncached_tokens_per_s(model, name, batch_size, args), 2)
    return row


def print_table(rows: list, args) -> None:
    machine = platform.processor() or "cpu"
    weights = args.model or "random weights"
    print(f"\nbackend {keras.backend.backend()}, {args.tokens} tokens after [BOS], {weights}, {machine}")
    header = f"{'decoder':>12} {'batch':>5} {'ours tok/s':>11} {'keras-hub tok/s':>16} {'ratio':>6}"
    header += f" {'compile s (ours/kh)':>20}" + (f" {'uncached tok/s':>15}" if args.uncached else "")
    print(header)
    for r in rows:
        line = (
            f"{r['decoder']:>12} {r['batch_size']:>5} {r['ours_tokens_per_s']:>11.1f} "
            f"{r['keras_hub_tokens_per_s']:>16.1f} {r['ratio']:>5.2f}x "
            f"{r['ours_compile_s']:>10.2f}/{r['keras_hub_compile_s']:<9.2f}"
        )
        if args.uncached:
            line += f" {r['uncached_tokens_per_s']:>15.2f}"
        print(line)


def main() -> None:
    args = ARGS
    keras.utils.set_random_seed(0)
    cfg = GPTConfig()  # the reference's sizes: 5000 tokens, 128 window
    if args.model:
        model = never_ends(keras.models.load_model(args.model, compile=False))
    else:
        model = never_ends(build_model(cfg))
    hub_model = keras_hub_model(cfg)
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        for name in args.decoders.split(","):
            rows.append(measure(model, hub_model, name, batch_size, args))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, args)
    if args.json:
        result = {
            "backend": keras.backend.backend(),
            "tokens": args.tokens,
            "model": args.model,
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "results": rows,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
