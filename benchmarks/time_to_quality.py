"""Time to quality: the reference recipe vs ours, val perplexity per epoch and seconds.

A benchmark, not a test. Both train the reference model (same weights seed, batch 64,
Adam 1e-3) on the same corpus's lines over 450 bytes, with a 5000-token vocabulary
learned from them, and validate on its valid.txt after every epoch with the reference's
metric (keras_hub Perplexity, [PAD] masked):

  reference   TensorFlow backend, text tokenized in the tf.data map every epoch (batches
              of lines shuffled with a 256 buffer, as the keras.io example), float32
  ours        our Trainer's input and settings: ids tokenized once, fed as arrays in an
              order drawn for each epoch (`EpochShuffle`), the `train.*` speed defaults of
              pipeline/config.py, and Adam's rate decayed along a cosine over the
              `--epochs` (what configs/simplebooks92.yaml trains with)
  ours_constant_lr
              ours with the reference's constant learning rate: the schedule's ablation
  ours_keras_loss
              ours compiled with the reference's Keras loss and keras_hub metric instead
              of `components.minigpt.losses` (the same values, computed another way)

The targets are the reference's best and its final val perplexity. A recipe's time to a
target is its wall time at the first epoch at or below it, the reference's own included:
timing the reference at its last epoch overstated the gain when it had reached its final
value epochs before (on the embedded corpus, at epoch 4 of 6).

The recipes alternate epoch by epoch (see `Recipe`); seconds are each recipe's own
training and validation time. `--epochs`, `--steps-per-epoch` and `--max-seconds` (per
recipe) bound the run. `--reference-json` takes the reference's figures from an earlier
run's JSON instead of training it again (on gutenberg-large its 6 epochs take ~1.5 h
here); the table then says so, since the two were not interleaved.

`--backend jax --tokens ids.npy` trains our recipes on ids that `--save-tokens ids.npy`
wrote on a machine with TensorFlow (train and valid ids, vocabulary beside them): no
TensorFlow needed, as on the GPU machine. The reference, which tokenizes text inside
tf.data, cannot run there; without `--reference-json` the table then has no targets.

Usage: python benchmarks/time_to_quality.py [--corpus DIR] [--epochs 6] [--max-seconds S]
           [--steps-per-epoch N] [--recipes reference,ours] [--reference-json PATH] [--json PATH]
       python benchmarks/time_to_quality.py --save-tokens ids.npy [--corpus DIR]
       python benchmarks/time_to_quality.py --backend jax --tokens ids.npy [--recipes ours,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import (  # noqa: E402
    BATCH,
    BOS_ID,
    KERAS_BACKENDS,
    REPO_ROOT,
    SEQ_LEN,
    backend_from_argv,
    corpus_lines,
    load_tokens,
    our_settings,
    save_tokens,
    token_labels,
    vocabulary,
)

backend_from_argv()  # before Keras is imported

import keras  # noqa: E402

from components.minigpt.callbacks import EpochShuffle  # noqa: E402
from components.minigpt.model import GPTConfig, build_model, compile_model  # noqa: E402
from components.minigpt.sequences import batches_per_epoch, features_from_labels  # noqa: E402
from components.minigpt.training import build_trainable_model, learning_rate_schedule  # noqa: E402
from pipeline.config import TrainConfig  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "gutenberg-large")
RECIPES = ("reference", "ours", "ours_constant_lr", "ours_keras_loss")


def first_reaching(val_perplexity: List[float], seconds: List[float], target: float) -> Optional[Tuple[int, float]]:
    """(epoch from 1, seconds so far) of the first epoch at or below `target`, or None if none is."""
    return next(((i + 1, s) for i, (v, s) in enumerate(zip(val_perplexity, seconds)) if v <= target), None)


def times_to_targets(results: Dict[str, dict]) -> Dict[str, dict]:
    """For the reference's best and its final val perplexity: each recipe's first epoch
    there, its seconds then and their ratio to the reference's own first time there."""
    reference = results["reference"]
    targets = {}
    for kind, target in (("best", min(reference["val_perplexity"])), ("final", reference["val_perplexity"][-1])):
        _, reference_seconds = first_reaching(reference["val_perplexity"], reference["seconds"], target)
        recipes = {}
        for name, r in results.items():
            hit = first_reaching(r["val_perplexity"], r["seconds"], target)
            recipes[name] = (
                None if hit is None else dict(epoch=hit[0], seconds=hit[1], time_ratio=hit[1] / reference_seconds)
            )
        targets[kind] = {"val_perplexity": target, "recipes": recipes}
    return targets


class Corpus(NamedTuple):
    """What the recipes train and validate on: the ids, and the text where it was read."""

    train: np.ndarray  # (N, 128) int32 labels
    valid: np.ndarray
    vocabulary_size: int
    text: Optional[Tuple[list, list, list]]  # train lines, valid lines, vocabulary; None from --tokens


def read_corpus(args) -> Corpus:
    """The ids of `--tokens`, or `--corpus`'s lines over 450 bytes and their ids."""
    if args.tokens:
        ids = load_tokens(args.tokens)
        if ids.valid is None:
            sys.exit(f"{args.tokens} has no valid ids beside it: write them with --save-tokens")
        return Corpus(ids.train, ids.valid, ids.vocabulary_size, None)
    from components.minigpt.tokenizer import TextCodec

    train_lines, valid_lines = corpus_lines(args.corpus), corpus_lines(args.corpus, "valid.txt")
    vocab = vocabulary(train_lines, args.corpus)
    codec = TextCodec(vocab, SEQ_LEN)
    # Tokenizing is the pipeline's Tokenize step, once, before the Trainer: not timed here.
    labels, valid = token_labels(codec, train_lines), token_labels(codec, valid_lines)
    return Corpus(labels, valid, len(vocab), (train_lines, valid_lines, vocab))


class Recipe:
    """One recipe's model and data, trained one epoch at a time so two recipes interleave.

    This host's speed drifts by up to 2x over minutes, so the two recipes alternate epoch
    by epoch instead of running one after the other: a slow stretch hits both alike.
    `max_steps` caps an epoch's batches (the Trainer's `train.steps_per_epoch`).
    """

    def __init__(self, name: str, corpus: Corpus, seed: int, epochs: int, max_steps: Optional[int] = None):
        self.name, self.seconds, self.val_perplexity, self._epoch = name, [], [], 0
        keras.utils.set_random_seed(seed)
        gpt = GPTConfig(vocabulary_size=corpus.vocabulary_size)
        if name == "reference":
            import tensorflow as tf

            from components.minigpt.tokenizer import TextCodec

            train_lines, valid_lines, vocab = corpus.text
            codec = TextCodec(vocab, SEQ_LEN)
            self.model = build_model(gpt, reference_logits=True)
            compile_model(self.model, 1e-3, reference_loss=True)

            def text_batches(lines, shuffle):
                ds = tf.data.Dataset.from_tensor_slices(lines).batch(BATCH)
                ds = ds.shuffle(256).take(max_steps or -1) if shuffle else ds
                return ds.map(codec.features_and_labels, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

            self._fit_args = dict(x=text_batches(train_lines, True), validation_data=text_batches(valid_lines, False))
        else:
            labels, valid = corpus.train, corpus.valid
            train = TrainConfig()
            schedule = "constant" if name == "ours_constant_lr" else "cosine"
            steps = epochs * batches_per_epoch(len(labels), BATCH, max_steps=max_steps)
            rate = learning_rate_schedule(train.learning_rate, schedule, steps)
            self.model = build_trainable_model(gpt, rate, our_settings(), reference_loss=name == "ours_keras_loss")
            # The Trainer's input: each epoch's order drawn from [seed, epoch] (`EpochShuffle`).
            shuffle = EpochShuffle(features_from_labels(labels, BOS_ID), labels, BATCH, seed, max_steps)
            self._fit_args = dict(
                x=shuffle.batches,
                shuffle=False,
                callbacks=[shuffle],
                validation_data=(features_from_labels(valid, BOS_ID), valid),
                validation_batch_size=BATCH,
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
    p.add_argument("--backend", choices=KERAS_BACKENDS, help="Keras' backend (default: Keras' own choice)")
    p.add_argument("--corpus", default=DEFAULT_CORPUS)
    p.add_argument("--tokens", help="the .npy of token ids that --save-tokens wrote; instead of --corpus")
    p.add_argument("--save-tokens", help="write the corpus's token ids to this .npy (valid ids, vocabulary beside it)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps-per-epoch", type=int, help="at most this many batches an epoch (default: all)")
    p.add_argument("--max-seconds", type=float, default=float("inf"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--recipes", help=f"comma-separated, from {', '.join(RECIPES)} (default: reference,ours; ours with --tokens)"
    )
    p.add_argument("--reference-json", help="take the reference's figures from this earlier run's --json")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.save_tokens:
        save_tokens(args.save_tokens, args.corpus)
        return
    names = (args.recipes or ("ours" if args.tokens else "reference,ours")).split(",")
    if not set(names) <= set(RECIPES) or "ours" not in names:
        p.error(f"--recipes must include ours and name only {', '.join(RECIPES)}")
    if args.reference_json and "reference" in names:
        p.error("--reference-json replaces the reference recipe: leave it out of --recipes")
    if args.tokens and "reference" in names:
        p.error("the reference tokenizes text inside tf.data: it needs --corpus, not --tokens")
    if not args.reference_json and "reference" not in names and not args.tokens:
        p.error("the reference is needed: name it in --recipes or give --reference-json")

    corpus = read_corpus(args)
    source = args.tokens or args.corpus
    print(
        f"{source}: {len(corpus.train)} train sequences, {len(corpus.valid)} valid, "
        f"vocabulary {corpus.vocabulary_size}, backend {keras.backend.backend()}"
    )
    recipes = [Recipe(name, corpus, args.seed, args.epochs, args.steps_per_epoch) for name in names]
    for _ in range(args.epochs):
        for recipe in recipes:
            if not recipe.seconds or recipe.seconds[-1] < args.max_seconds:
                recipe.train_epoch()
    results = {r.name: {"val_perplexity": r.val_perplexity, "seconds": r.seconds} for r in recipes}
    if args.reference_json:
        with open(args.reference_json, encoding="utf-8") as f:
            results = {"reference": json.load(f)["reference"], **results}
        print(f"reference: figures from {args.reference_json} (an earlier run, not interleaved with this one)")
    widths = [max(len(name) + 6, 10) for name in results]
    print("\n" + f"{'epoch':>6}" + "".join(f"{name + ' ppl':>{w}}{'s':>7}" for name, w in zip(results, widths)))
    for i in range(max(len(r["seconds"]) for r in results.values())):
        cells = [
            f"{r['val_perplexity'][i]:>{w}.1f}{r['seconds'][i]:>7.0f}" if i < len(r["seconds"]) else " " * (w + 7)
            for r, w in zip(results.values(), widths)
        ]
        print(f"{i + 1:>6}" + "".join(cells))
    summary = {"corpus": source, "backend": keras.backend.backend(), "steps_per_epoch": args.steps_per_epoch, **results}
    if "reference" not in results:
        print("\nNo reference recipe or --reference-json: no time-to-target table.")
    else:
        summary.update(reference_from=args.reference_json, targets=print_targets(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


def print_targets(results: Dict[str, dict]) -> Dict[str, dict]:
    """Prints and returns `times_to_targets(results)`."""
    targets = times_to_targets(results)
    print("\nTime to the reference's best and final val perplexity: each recipe's first epoch at or below it,")
    print("the seconds so far, and their ratio to the reference's own first time there")
    print(f"{'target':>14}" + "".join(f"{name:>26}" for name in results))
    for kind, target in targets.items():
        cells = [
            f"epoch {hit['epoch']}, {hit['seconds']:.0f} s ({hit['time_ratio']:.2f})" if hit else "not reached"
            for hit in target["recipes"].values()
        ]
        print(f"{kind:>6}{target['val_perplexity']:>8.1f}" + "".join(f"{cell:>26}" for cell in cells))
    return targets


if __name__ == "__main__":
    main()
