"""WordPiece vocabulary: our VocabGen Beam job vs keras_nlp's function, same lines, same run.

A benchmark, not a test. The lines are a corpus's train lines over 450 characters (the
reference's filter), written as the gzip tf.Example shards TextExampleGen would write.

  baseline   `keras_nlp.tokenizers.compute_word_piece_vocabulary` on a tf.data of the
             lines batched by 64, vocabulary 5000, lowercase, reserved [PAD] [UNK] [BOS]
             (the reference's call)
  ours       VocabGen's executor on the shards: Beam's DirectRunner in multi-processing
             mode on every core (`--running-mode in_memory`: in this process), Beam
             start-up included
  tokenizers HuggingFace `tokenizers`' WordPiece trainer (Rust; a different algorithm,
             so a different vocabulary), if installed (`make bench-deps`)

Each path is also split into pretokenize + count and learn: the baseline's pretokenize
and count are timed on their own (keras_nlp's own functions) and its learn is the rest;
ours' learn is our learner timed on the same counts in this process, its Beam part the
rest. `identical` says whether ours returned keras_nlp's vocabulary token for token;
`identical_word_counts` whether our pretokenizer (`components/vocab_gen/pretokenizer.py`,
no TensorFlow) counted every word of the corpus as keras_nlp's pretokenizer does.

Usage:
  python benchmarks/vocab.py [--corpus DIR] [--json PATH] [--vocab-out PATH] [--no-baseline]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import REPO_ROOT, RESERVED, VOCAB_SIZE, corpus_lines  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "gutenberg-large")
KERAS_NLP_BATCH = 64
BENCH_PACKAGES = os.path.join(REPO_ROOT, ".bench-packages")  # `make bench-deps`


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder with train.txt")
    p.add_argument("--shards", type=int, default=os.cpu_count(), help="example files (Beam reads one per worker)")
    p.add_argument("--running-mode", default="multi_processing", choices=["multi_processing", "in_memory"])
    p.add_argument("--no-baseline", action="store_true", help="skip keras_nlp (minutes on a large corpus)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--vocab-out", help="write our vocabulary here, one token per line")
    return p.parse_args(argv)


def write_shards(lines, folder: str, shards: int) -> None:
    """The lines as `shards` gzip TFRecord files of tf.Example{text} under Split-train/."""
    import tensorflow as tf

    from components.data.formats import text_to_example

    split = os.path.join(folder, "Split-train")
    os.makedirs(split)
    writers = [tf.io.TFRecordWriter(os.path.join(split, f"data-{i:05d}.gz"), options="GZIP") for i in range(shards)]
    for i, line in enumerate(lines):
        writers[i % shards].write(text_to_example(line).SerializeToString())
    for writer in writers:
        writer.close()


def run_vocab_gen(folder: str, running_mode: str) -> list:
    """VocabGen's executor over the shards, as the pipeline runs it on this machine."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import Channel, standard_artifacts

    from components.data.artifact_types import Vocabulary, read_vocabulary
    from components.vocab_gen import executor
    from components.vocab_gen.component import VocabGen

    examples = standard_artifacts.Examples()
    examples.uri = folder
    examples.split_names = '["train"]'
    vocabulary = Vocabulary()
    vocabulary.uri = os.path.join(folder, "vocab")
    component = VocabGen(
        examples=Channel(type=standard_artifacts.Examples), vocabulary_size=VOCAB_SIZE, reserved_tokens=RESERVED
    )
    from pipeline.beam_args import LOCAL_SETUP_FILE

    workers = 0 if running_mode == "multi_processing" else 1  # 0: one per core
    # The pipeline's DirectRunner flags (`pipeline.beam_args`): with `--setup_file` TFX
    # builds no package of its own before the step (~3 s).
    beam_args = [
        "--runner=DirectRunner",
        f"--direct_running_mode={running_mode}",
        f"--direct_num_workers={workers}",
        f"--setup_file={LOCAL_SETUP_FILE}",
    ]
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=os.path.join(folder, "tmp"))
    executor.Executor(context).Do({"examples": [examples]}, {"vocabulary": [vocabulary]}, component.exec_properties)
    return read_vocabulary(os.path.join(vocabulary.uri, Vocabulary.FILE_NAME))


def keras_nlp_count_words(lines) -> collections.Counter:
    """keras_nlp's pretokenize + count, timed apart from its learner."""
    import tensorflow as tf
    from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as reference

    data = tf.data.Dataset.from_tensor_slices(lines).batch(KERAS_NLP_BATCH)
    words = data.map(lambda t: pretokenize(t, True, False, True, True), num_parallel_calls=tf.data.AUTOTUNE)
    return reference.count_words(words)


def keras_nlp_vocabulary(lines) -> list:
    import keras_nlp
    import tensorflow as tf

    return keras_nlp.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(lines).batch(KERAS_NLP_BATCH),
        vocabulary_size=VOCAB_SIZE,
        lowercase=True,
        reserved_tokens=RESERVED,
    )


def tokenizers_seconds(lines):
    """Seconds HuggingFace's WordPiece trainer takes (BERT normaliser and pre-tokenizer,
    lowercase), or None where the package is not installed."""
    sys.path.append(BENCH_PACKAGES)  # last: it cannot shadow the pipeline's packages
    try:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    except ImportError:
        return None
    start = time.perf_counter()
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=RESERVED)
    tokenizer.train_from_iterator((line.decode("utf-8") for line in lines), trainer=trainer)
    return time.perf_counter() - start


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    from components.vocab_gen import learner, pretokenizer

    lines = corpus_lines(args.corpus)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        write_shards(lines, folder, args.shards)
        ours, ours_s = timed(run_vocab_gen, folder, args.running_mode)
    counts, count_s = timed(keras_nlp_count_words, lines)
    word_counts = list(counts.items())
    _, learn_s = timed(learner.learn, word_counts, VOCAB_SIZE, RESERVED)
    rows["ours"] = {"total_s": ours_s, "count_s": ours_s - learn_s, "learn_s": learn_s, "tokens": len(ours)}
    summary = {"corpus": args.corpus, "lines": len(lines), "distinct_words": len(counts), "ours_s": ours_s}
    summary["identical_word_counts"] = pretokenizer.count_words(lines, lowercase=True) == counts
    if not args.no_baseline:
        baseline, baseline_s = timed(keras_nlp_vocabulary, lines)
        rows["baseline"] = {"total_s": baseline_s, "count_s": count_s, "learn_s": baseline_s - count_s}
        rows["baseline"]["tokens"] = len(baseline)
        summary.update(baseline_s=baseline_s, ratio=ours_s / baseline_s, identical=ours == baseline)
    hf_s = tokenizers_seconds(lines)
    if hf_s is not None:
        rows["tokenizers"] = {"total_s": hf_s, "count_s": None, "learn_s": None, "tokens": VOCAB_SIZE}
    summary["rows"] = rows

    print(f"\n{args.corpus}: {len(lines):,} lines > 450 chars, {len(counts):,} distinct words, {os.cpu_count()} cores")
    print(f"{'path':<12}{'total s':>10}{'count s':>10}{'learn s':>10}{'tokens':>8}")
    for name, row in rows.items():
        cells = [f"{row[k]:>10.1f}" if row[k] is not None else f"{'-':>10}" for k in ("total_s", "count_s", "learn_s")]
        print(f"{name:<12}{''.join(cells)}{row['tokens']:>8}")
    print(f"word counts identical to keras_nlp's: {summary['identical_word_counts']}")
    if "ratio" in summary:
        print(f"ours / baseline: {summary['ratio']:.3f}, identical: {summary['identical']}")
    if args.vocab_out:
        with open(args.vocab_out, "w", encoding="utf-8") as f:
            f.write("\n".join(ours) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
