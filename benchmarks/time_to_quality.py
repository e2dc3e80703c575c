"""Time to quality: the reference recipe vs ours, val perplexity per epoch and seconds.

A benchmark, not a test. Both train the reference model (same weights seed, batch 64,
Adam 1e-3) on the same corpus's lines over 450 bytes, with a 5000-token vocabulary
learned from them, and validate on its valid.txt after every epoch with the reference's
metric (keras_hub Perplexity, [PAD] masked):

  reference   TensorFlow backend, text tokenized in the tf.data map every epoch (batches
              of lines shuffled with a 256 buffer, as the keras.io example), float32
  ours        our Trainer's input and settings: ids tokenized once, fed as arrays and
              shuffled each epoch, `train.*` speed settings from pipeline/config.py

It reports when ours reaches the reference's final val perplexity, and how much sooner.
The recipes alternate epoch by epoch (see `Recipe`); seconds are each recipe's own
training and validation time. `--epochs` and `--max-seconds` (per recipe) bound the run.

Usage: python benchmarks/time_to_quality.py [--corpus DIR] [--epochs 6] [--max-seconds S] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BATCH,
    BOS_ID,
    REPO_ROOT,
    SEQ_LEN,
    corpus_lines,
    our_settings,
    token_labels,
    vocabulary,
)
from components.minigpt.model import GPTConfig, build_model, compile_model  # noqa: E402
from components.minigpt.sequences import features_from_labels  # noqa: E402
from components.minigpt.tokenizer import TextCodec  # noqa: E402
from components.minigpt.training import build_trainable_model  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "gutenberg-large")


class Recipe:
    """One recipe's model and data, trained one epoch at a time so two recipes interleave.

    This host's speed drifts by up to 2x over minutes, so the two recipes alternate epoch
    by epoch instead of running one after the other: a slow stretch hits both alike.
    """

    def __init__(self, name: str, train_lines, valid_lines, vocab, seed: int):
        self.name, self.seconds, self.val_perplexity, self._epoch = name, [], [], 0
        codec = TextCodec(vocab, SEQ_LEN)
        keras.utils.set_random_seed(seed)
        if name == "reference":
            self.model = build_model(GPTConfig(vocabulary_size=len(vocab)))
            compile_model(self.model, 1e-3)

            def text_batches(lines, shuffle):
                ds = tf.data.Dataset.from_tensor_slices(lines).batch(BATCH)
                ds = ds.shuffle(256) if shuffle else ds
                return ds.map(codec.features_and_labels, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

            self._fit_args = dict(x=text_batches(train_lines, True), validation_data=text_batches(valid_lines, False))
        else:
            self.model = build_trainable_model(GPTConfig(vocabulary_size=len(vocab)), 1e-3, our_settings())
            # Tokenizing is the pipeline's Tokenize step, once, before the Trainer: not timed here.
            labels, valid = token_labels(codec, train_lines), token_labels(codec, valid_lines)
            self._fit_args = dict(
                x=features_from_labels(labels, BOS_ID),
                y=labels,
                batch_size=BATCH,
                shuffle=True,
                validation_data=(features_from_labels(valid, BOS_ID), valid),
            )

    def train_epoch(self) -> None:
        """Fit one more epoch (validation included) and record its val perplexity and the running seconds."""
        start = time.perf_counter()
        history = self.model.fit(**self._fit_args, initial_epoch=self._epoch, epochs=self._epoch + 1, verbose=0)
        self._epoch += 1
        self.seconds.append((self.seconds[-1] if self.seconds else 0.0) + time.perf_counter() - start)
        self.val_perplexity.append(float(history.history["val_perplexity"][-1]))
        print(
            f"  {self.name} epoch {self._epoch}: val_perplexity {self.val_perplexity[-1]:.1f} "
            f"after {self.seconds[-1]:.0f} s of training",
            flush=True,
        )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=DEFAULT_CORPUS)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-seconds", type=float, default=float("inf"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json")
    args = p.parse_args(argv)

    train_lines, valid_lines = corpus_lines(args.corpus), corpus_lines(args.corpus, "valid.txt")
    vocab = vocabulary(train_lines, args.corpus)
    print(f"{args.corpus}: {len(train_lines)} train lines, {len(valid_lines)} valid lines, vocabulary {len(vocab)}")
    recipes = [Recipe(name, train_lines, valid_lines, vocab, args.seed) for name in ("reference", "ours")]
    for _ in range(args.epochs):
        for recipe in recipes:
            if not recipe.seconds or recipe.seconds[-1] < args.max_seconds:
                recipe.train_epoch()
    results = {r.name: {"val_perplexity": r.val_perplexity, "seconds": r.seconds} for r in recipes}
    ref, ours = results["reference"], results["ours"]
    print(f"\n{'epoch':>5}{'reference ppl':>15}{'s':>8}{'ours ppl':>10}{'s':>8}")
    for i in range(max(len(ref["seconds"]), len(ours["seconds"]))):
        cells = [
            f"{r['val_perplexity'][i]:>{w}.1f}{r['seconds'][i]:>8.0f}" if i < len(r["seconds"]) else " " * (w + 8)
            for r, w in ((ref, 15), (ours, 10))
        ]
        print(f"{i + 1:>5}" + "".join(cells))
    target = ref["val_perplexity"][-1]
    reached = next((i for i, v in enumerate(ours["val_perplexity"]) if v <= target), None)
    summary = {
        "corpus": args.corpus,
        "target_val_perplexity": target,
        "reference_seconds": ref["seconds"][-1],
        **results,
    }
    if reached is None:
        print(f"ours did not reach the reference's final val perplexity {target:.1f}")
    else:
        summary.update(ours_seconds=ours["seconds"][reached], ours_epoch=reached + 1)
        summary["time_ratio"] = summary["ours_seconds"] / summary["reference_seconds"]
        print(
            f"ours reached the reference's epoch-{len(ref['seconds'])} val perplexity {target:.1f} at epoch "
            f"{reached + 1}, after {summary['ours_seconds']:.0f} s vs {summary['reference_seconds']:.0f} s "
            f"({summary['time_ratio']:.2f} of the time)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
