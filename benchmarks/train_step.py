"""Training step time: the reference recipe vs our Trainer's settings, same machine, same run.

A benchmark, not a test. Each variant trains the reference model (same weights seed) for
`--warmup` + `--steps` steps of batch 64 x 128 tokens; its step time is the median over
`--repeats` runs, interleaved with the other variants (this shared host drifts by up to
2x from minute to minute). The loss on a fixed held-out batch after those steps shows
that a variant learns the same. The achieved FLOP/s stands next to this machine's matmul
peak, measured in the same run.

  baseline   the reference: TensorFlow backend, text -> WordPiece inside the tf.data map
             (`TextCodec.features_and_labels`, the reference's preprocess), float32,
             Keras' defaults (no XLA on CPU), its plain `Dense` logits layer
  ours       our Trainer: token ids read once (what the Tokenize step writes), fed as
             arrays, the model's `TokenLogits` (one 2-D logits matmul), the loss and
             metric of `components.minigpt.losses` (one oneDNN softmax), with
             `train.precision` / `train.jit_compile` / `train.steps_per_execution` from
             pipeline/config.py's defaults
  others     levers measured one at a time: fp32, fp32+xla, bf16, bf16+xla, ...;
             `bf16+dense` is ours with the reference's `Dense` logits, `bf16+keras_loss`
             ours with the reference's Keras loss and keras_hub metric

Usage:
  python benchmarks/train_step.py [--corpus DIR] [--steps 20] [--repeats 3] [--json PATH]
  python benchmarks/train_step.py --backend jax --tokens ids.npy   # no TensorFlow needed
  python benchmarks/train_step.py --save-tokens ids.npy            # ids for a TF-less machine
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
from benchmarks.common import (  # noqa: E402
    BATCH,
    BOS_ID,
    EMBEDDED_CORPUS,
    KERAS_BACKENDS,
    SEQ_LEN,
    VOCAB_SIZE,
    corpus_lines,
    load_tokens,
    our_settings,
    save_tokens,
    token_labels,
    vocabulary,
)

# name -> (precision, jit_compile, steps_per_execution); "ours" is filled from the config.
# Variants named here build the model with the reference's `Dense` logits layer, or
# compile it with the reference's loss and metric.
REFERENCE_LOGITS = ("baseline", "bf16+dense")
REFERENCE_LOSS = ("baseline", "bf16+keras_loss")
LEVERS = {
    "fp32": ("float32", False, 1),
    "fp32+xla": ("float32", True, 1),
    "bf16": ("mixed_bfloat16", False, 1),
    "bf16+xla": ("mixed_bfloat16", True, 1),
    "bf16+spe8": ("mixed_bfloat16", False, 8),
    "bf16+dense": ("mixed_bfloat16", None, 1),
    "bf16+keras_loss": ("mixed_bfloat16", None, 1),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="tensorflow", choices=KERAS_BACKENDS)
    p.add_argument("--corpus", default=EMBEDDED_CORPUS, help="folder with train.txt (lines > 450 chars are used)")
    p.add_argument("--tokens", help="the .npy of token ids that --save-tokens wrote; instead of --corpus")
    p.add_argument("--synthetic", action="store_true", help="random full-length token ids; instead of --corpus")
    p.add_argument("--save-tokens", help="write the corpus's token ids to this .npy (vocabulary beside it) and exit")
    p.add_argument("--variants", default=None, help="comma-separated; default: baseline,ours and every lever")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


ARGS = parse_args()
os.environ["KERAS_BACKEND"] = ARGS.backend  # before Keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from components.minigpt.model import GPTConfig, build_model, compile_model, forward_flops  # noqa: E402
from components.minigpt.sequences import features_from_labels  # noqa: E402
from components.minigpt.training import (  # noqa: E402
    TrainingSettings,
    build_trainable_model,
    cpu_has_bf16,
    has_gpu,
    use_every_local_device,
)


def load_data(args):
    """(labels (N, 128) int32, vocabulary size, text lines and vocabulary or None)."""
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        return rng.integers(3, VOCAB_SIZE, size=(64 * BATCH, SEQ_LEN), dtype="int32"), VOCAB_SIZE, None
    if args.tokens:
        ids = load_tokens(args.tokens)
        return ids.train, ids.vocabulary_size, None
    from components.minigpt.tokenizer import TextCodec

    lines = corpus_lines(args.corpus)
    vocab = vocabulary(lines, args.corpus)
    return token_labels(TextCodec(vocab, SEQ_LEN), lines), len(vocab), (lines, vocab)


def reference_dataset(lines: list, vocab: list):
    """The reference's input: batches of text lines, tokenized in the tf.data map."""
    import tensorflow as tf

    from components.minigpt.tokenizer import TextCodec

    codec = TextCodec(vocab, SEQ_LEN)
    return (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(BATCH)
        .map(codec.features_and_labels, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .repeat()
    )


class StepClock(keras.callbacks.Callback):
    """Wall time at the end of every call into the step (every `steps_per_execution` steps)."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((batch, time.perf_counter()))


def run_variant(name: str, settings: TrainingSettings, data, held_out, args) -> dict:
    labels, vocab_size, text = data
    keras.utils.set_random_seed(args.seed)
    cfg = GPTConfig(vocabulary_size=vocab_size)
    if name in REFERENCE_LOGITS + REFERENCE_LOSS:
        model = build_model(cfg, dtype=settings.precision, reference_logits=name in REFERENCE_LOGITS)
        compile_model(
            model, 1e-3, settings.jit_compile, settings.steps_per_execution, reference_loss=name in REFERENCE_LOSS
        )
    else:
        model = build_trainable_model(cfg, 1e-3, settings)
    # Whole calls only, and the same number of steps for every variant (so that the
    # losses compare): warm-up and timed steps are multiples of the largest
    # steps_per_execution among the variants.
    unit = settings.steps_per_execution
    warmup, timed = -(-args.warmup // args.unit) * args.unit, -(-args.steps // args.unit) * args.unit
    steps = warmup + timed
    clock = StepClock()
    start = time.perf_counter()
    if name == "baseline":
        model.fit(reference_dataset(*text), epochs=1, steps_per_epoch=steps, callbacks=[clock], verbose=0)
    else:
        n = steps * BATCH
        model.fit(
            features_from_labels(labels[:n], BOS_ID),
            labels[:n],
            batch_size=BATCH,
            shuffle=False,
            epochs=1,
            steps_per_epoch=steps,
            callbacks=[clock],
            verbose=0,
        )
    total = time.perf_counter() - start
    # The timed steps (after compilation and the first batches) over the time they took.
    ends = [t for _, t in clock.ends]
    assert len(ends) == steps // unit, (len(ends), steps, unit)
    step_s = (ends[-1] - ends[warmup // unit - 1]) / timed
    loss = float(model.evaluate(*held_out, batch_size=BATCH, verbose=0)[0])
    return {"step_s": step_s, "loss": loss, "total_s": total, "flops": forward_flops(cfg, BATCH) * 3}


def matmul_peak(dtype: str, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n matmul on this backend: the ceiling a training step can reach."""
    a = keras.ops.ones((n, n), dtype=dtype)

    def wait(x):  # block until computed (float32: NumPy has no bfloat16 on every backend)
        keras.ops.convert_to_numpy(keras.ops.cast(x[0, 0], "float32"))

    wait(keras.ops.matmul(a, a))
    start = time.perf_counter()
    for _ in range(reps):
        c = keras.ops.matmul(a, a)
    wait(c)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    args = ARGS
    if args.save_tokens:
        save_tokens(args.save_tokens, args.corpus)
        return
    devices = use_every_local_device()  # JAX: each batch split over all local devices
    data = load_data(args)
    variants = {"ours": our_settings(), **{k: TrainingSettings(*v) for k, v in LEVERS.items()}}
    if data[2] is not None and args.backend == "tensorflow":
        variants = {"baseline": TrainingSettings("float32", None, 1), **variants}
    names = args.variants.split(",") if args.variants else list(variants)
    args.unit = max(variants[name].steps_per_execution for name in names)
    labels = data[0]
    needed = (-(-args.warmup // args.unit) * args.unit + -(-args.steps // args.unit) * args.unit + 4) * BATCH
    if len(labels) < needed:
        sys.exit(f"need {needed} sequences, have {len(labels)}")
    held_out = (features_from_labels(labels[-4 * BATCH :], BOS_ID), labels[-4 * BATCH :])
    results = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:  # interleaved: drift on a shared host hits every variant alike
            results[name].append(run_variant(name, variants[name], data, held_out, args))
            step_ms = results[name][-1]["step_s"] * 1e3
            print(f"repeat {repeat + 1}/{args.repeats} {name}: {step_ms:.0f} ms/step", flush=True)
    # Under ONEDNN_MAX_CPU_ISA=AVX2 (or on an AVX2-only CPU) oneDNN has no bf16 matmul to measure.
    bf16 = has_gpu() or cpu_has_bf16()
    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16") if bf16 else float("nan")}
    rows = {}
    for name in names:
        step_s = statistics.median(r["step_s"] for r in results[name])
        flops = results[name][0]["flops"]
        peak = peaks["bfloat16" if "bfloat16" in variants[name].precision else "float32"]
        rows[name] = {
            "settings": variants[name]._asdict(),
            "ms_per_step": step_s * 1e3,
            "tokens_per_s": BATCH * SEQ_LEN / step_s,
            "gflops": flops / step_s / 1e9,
            "peak_fraction": flops / step_s / peak,
            "loss": statistics.median(r["loss"] for r in results[name]),
            "step_s_all": [r["step_s"] for r in results[name]],
        }
    base = "baseline" if "baseline" in rows else names[0]
    print(
        f"\nbackend {args.backend} on {devices} device(s), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; "
        f"matmul peak fp32 {peaks['float32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s; "
        f"{results[names[0]][0]['flops'] / 1e9:.0f} GFLOP a step; medians of {args.repeats}; "
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}"
    )
    print(f"{'variant':<16}{'ms/step':>10}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}{'vs ' + base:>12}{'loss':>8}")
    for name, row in rows.items():
        print(
            f"{name:<16}{row['ms_per_step']:>10.0f}{row['tokens_per_s']:>10.0f}{row['gflops']:>9.0f}"
            f"{row['peak_fraction']:>9.0%}{row['ms_per_step'] / rows[base]['ms_per_step']:>12.2f}{row['loss']:>8.3f}"
        )
    # The fastest a step of these FLOPs can be on this machine: every matmul at the peak.
    floor_ms = results[names[0]][0]["flops"] / peaks["float32"] * 1e3
    print(
        f"float32 floor (all matmuls at the fp32 peak): {floor_ms:.0f} ms/step, "
        f"{floor_ms / rows[base]['ms_per_step']:.2f} of {base}"
    )
    if args.json:
        summary = {
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "float32_floor_ms": floor_ms,
            "backend": args.backend,
            "devices": devices,
            "steps": args.steps,
            "repeats": args.repeats,
            "matmul_peak_flops": peaks,
            "variants": rows,
        }
        if "baseline" in rows and "ours" in rows:
            summary.update(
                baseline_s=rows["baseline"]["ms_per_step"] / 1e3,
                ours_s=rows["ours"]["ms_per_step"] / 1e3,
                ratio=rows["ours"]["ms_per_step"] / rows["baseline"]["ms_per_step"],
                baseline_loss=rows["baseline"]["loss"],
                ours_loss=rows["ours"]["loss"],
            )
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
