"""Input throughput: sequences/s the Trainer's input delivers vs what its step consumes.

A benchmark, not a test. Three figures, same machine, same run:
  reference   the reference's input: batches of text lines tokenized in the tf.data map
  ours        what `model.fit` is fed in our Trainer: token ids already in memory (read
              once from Tokenize's output), batched and shuffled by Keras' data adapter
  step        sequences/s our training step consumes here (`benchmarks/train_step.py`'s
              "ours" settings, a few steps), and on one H100/H200 (~35 k/s at ~1.8 ms a
              step of 64, docs/measurements.md §2)

Usage: python benchmarks/input_pipeline.py [--corpus DIR] [--batches 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from keras.src.trainers.data_adapters import get_data_adapter  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BATCH,
    BOS_ID,
    EMBEDDED_CORPUS,
    SEQ_LEN,
    corpus_lines,
    our_settings,
    token_labels,
    vocabulary,
)
from components.minigpt.model import GPTConfig  # noqa: E402
from components.minigpt.sequences import features_from_labels  # noqa: E402
from components.minigpt.tokenizer import TextCodec  # noqa: E402
from components.minigpt.training import build_trainable_model  # noqa: E402

GPU_STEP_SEQUENCES_PER_S = 64 / 1.82e-3  # docs/measurements.md §2: Keras fit on JAX, one H200, batch 64


def sequences_per_s(batches, num_batches: int) -> float:
    """Drains `num_batches` batches (after one to warm up) and times it."""
    it = iter(batches)
    next(it)
    start, count = time.perf_counter(), 0
    for _ in range(num_batches):
        features, _ = next(it)
        count += len(features)
    return count / (time.perf_counter() - start)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=EMBEDDED_CORPUS)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--step-batches", type=int, default=6)
    p.add_argument("--json")
    args = p.parse_args(argv)

    lines = corpus_lines(args.corpus)
    vocab = vocabulary(lines, args.corpus)
    codec = TextCodec(vocab, SEQ_LEN)
    reference = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(BATCH)
        .shuffle(256)
        .map(codec.features_and_labels, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .repeat()
    )
    labels = token_labels(codec, lines)
    features = features_from_labels(labels, BOS_ID)
    # Exactly what Model.fit builds from arrays (shuffled every epoch), repeated. Keras
    # exposes no public name for it; this is the function fit calls.
    adapter = get_data_adapter(x=features, y=labels, batch_size=BATCH, shuffle=True, steps_per_epoch=None)
    ours = adapter.get_tf_dataset().repeat()
    results = {
        "reference_sequences_per_s": sequences_per_s(reference, args.batches),
        "ours_sequences_per_s": sequences_per_s(ours, args.batches),
    }

    settings = our_settings()
    model = build_trainable_model(GPTConfig(vocabulary_size=len(vocab)), 1e-3, settings)
    n = (args.step_batches + 1) * BATCH
    model.fit(features[:BATCH], labels[:BATCH], batch_size=BATCH, verbose=0)
    start = time.perf_counter()
    model.fit(features[:n], labels[:n], batch_size=BATCH, verbose=0)
    results["step_sequences_per_s_here"] = n / (time.perf_counter() - start)
    results["step_sequences_per_s_gpu"] = GPU_STEP_SEQUENCES_PER_S
    for key in ("ours", "reference"):
        results[f"{key}_vs_step_here"] = results[f"{key}_sequences_per_s"] / results["step_sequences_per_s_here"]
        results[f"{key}_vs_step_gpu"] = results[f"{key}_sequences_per_s"] / GPU_STEP_SEQUENCES_PER_S

    print(f"{'input':<12}{'sequences/s':>14}{'x step here':>14}{'x step on GPU':>16}")
    for key in ("reference", "ours"):
        print(
            f"{key:<12}{results[f'{key}_sequences_per_s']:>14,.0f}"
            f"{results[f'{key}_vs_step_here']:>14.1f}{results[f'{key}_vs_step_gpu']:>16.2f}"
        )
    print(
        f"step consumes {results['step_sequences_per_s_here']:,.0f} sequences/s here ({settings.precision}), "
        f"~{GPU_STEP_SEQUENCES_PER_S:,.0f}/s on one H200"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
