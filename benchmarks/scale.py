"""The Beam steps at growing corpus sizes: wall time per step and peak memory.

A benchmark, not a test. For each size, a synthetic corpus (gutenberg-large's train
lines repeated up to that many MB; its valid split as the eval split) goes through
TextExampleGen, VocabGen and Tokenize, the executors the pipeline runs, in a fresh
child process. Reported per size: each step's seconds, the child's peak RSS (`wait4`)
and the peak of the whole process tree's RSS, the child and every Beam worker process it
starts (sampled from /proc every 0.2 s). With `--mode in_memory` every Beam worker is
that child; with `multi_processing` the workers are its children.

`--crc-profile` (in memory only: it counts in the child's own process) also times every
TFRecord checksum Beam computes (`_TFRecordUtil._masked_crc32c`, two per record read or
written): calls, bytes, seconds (an upper bound: a timer around each call) and which
crc32c function Beam picked (python-snappy's when importable, else crcmod's).

Usage:
  python benchmarks/scale.py [--sizes 100,300,1000] [--mode in_memory] [--json PATH] [--crc-profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.vocab import DEFAULT_CORPUS  # noqa: E402
from components.data.formats import RESERVED_TOKENS  # noqa: E402
from pipeline.beam_args import LOCAL_SETUP_FILE  # noqa: E402

RESERVED = list(RESERVED_TOKENS)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder with train.txt and valid.txt to repeat")
    p.add_argument("--sizes", default="100,300,1000", help="train split sizes in MB")
    p.add_argument("--mode", default="in_memory", choices=["in_memory", "multi_processing"])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--crc-profile", action="store_true", help="time Beam's TFRecord checksums (in memory only)")
    p.add_argument("--child", nargs=3, metavar=("CORPUS_DIR", "WORK_DIR", "MODE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_corpus(source: str, folder: str, megabytes: int) -> None:
    """train.txt: `source`'s train lines repeated to `megabytes`; valid.txt: its valid split."""
    with open(os.path.join(source, "train.txt"), "rb") as f:
        text = f.read()
    target = megabytes * 2**20
    with open(os.path.join(folder, "train.txt"), "wb") as f:
        written = 0
        while written < target:
            chunk = text[: target - written]
            f.write(chunk if chunk.endswith(b"\n") else chunk + b"\n")
            written += len(chunk)
    with open(os.path.join(source, "valid.txt"), "rb") as src, open(os.path.join(folder, "valid.txt"), "wb") as dst:
        dst.write(src.read())


def run_steps(corpus_dir: str, work_dir: str, mode: str) -> dict:
    """TextExampleGen, VocabGen and Tokenize on `corpus_dir`, as the pipeline runs them."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import Channel, standard_artifacts

    from components.data.artifact_types import Vocabulary
    from components.text_example_gen import executor as text_executor
    from components.text_example_gen.component import TextExampleGen
    from components.tokenize import executor as tokenize_executor
    from components.tokenize.component import Tokenize
    from components.vocab_gen import executor as vocab_executor
    from components.vocab_gen.component import VocabGen

    workers = "0" if mode == "multi_processing" else "1"
    beam_args = ["--runner=DirectRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    beam_args.append(f"--setup_file={LOCAL_SETUP_FILE}")  # as the pipeline: no TFX sdist per step
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=os.path.join(work_dir, "tmp"))
    examples, vocabulary, token_ids = standard_artifacts.Examples(), Vocabulary(), standard_artifacts.Examples()
    examples.uri, vocabulary.uri, token_ids.uri = (os.path.join(work_dir, n) for n in ("examples", "vocab", "ids"))
    seconds = {}

    start = time.perf_counter()
    props = dict(TextExampleGen(corpus_dir, "train.txt", "valid.txt", 450).exec_properties)
    text_executor.Executor(context).Do({}, {"examples": [examples]}, props)
    seconds["TextExampleGen"] = time.perf_counter() - start
    peak_after = {"TextExampleGen": _own_peak_mb()}

    start = time.perf_counter()
    props = VocabGen(examples=Channel(type=standard_artifacts.Examples), vocabulary_size=5000, reserved_tokens=RESERVED)
    vocab_executor.Executor(context).Do({"examples": [examples]}, {"vocabulary": [vocabulary]}, props.exec_properties)
    seconds["VocabGen"] = time.perf_counter() - start
    peak_after["VocabGen"] = _own_peak_mb()

    start = time.perf_counter()
    inputs = {"examples": Channel(type=standard_artifacts.Examples), "vocabulary": Channel(type=Vocabulary)}
    props = Tokenize(**inputs, seq_len=128, lowercase=True).exec_properties
    tokenize_executor.Executor(context).Do(
        {"examples": [examples], "vocabulary": [vocabulary]}, {"token_ids": [token_ids]}, props
    )
    seconds["Tokenize"] = time.perf_counter() - start
    peak_after["Tokenize"] = _own_peak_mb()
    lines_kept = examples.get_int_custom_property("train_lines_kept")
    return {"seconds": seconds, "lines_kept": lines_kept, "runner_peak_mb_after": peak_after}


def profile_crc() -> dict:
    """Wraps Beam's TFRecord checksum with a timer; the returned dict fills in as it runs."""
    from apache_beam.io import tfrecordio  # pylint: disable=import-outside-toplevel

    stats = {"calls": 0, "bytes": 0, "seconds": 0.0}
    masked = tfrecordio._TFRecordUtil._masked_crc32c.__func__  # pylint: disable=protected-access

    def timed(cls, value, crc32c_fn=tfrecordio._default_crc32c_fn):  # pylint: disable=protected-access
        start = time.perf_counter()
        crc = masked(cls, value, crc32c_fn)
        stats["seconds"] += time.perf_counter() - start
        stats["calls"] += 1
        stats["bytes"] += len(value)
        return crc

    tfrecordio._TFRecordUtil._masked_crc32c = classmethod(timed)  # pylint: disable=protected-access
    return stats


def _crc_fn_name() -> str:
    from apache_beam.io import tfrecordio  # pylint: disable=import-outside-toplevel

    fn = tfrecordio._default_crc32c_fn.fn  # pylint: disable=protected-access
    return f"{getattr(fn, '__module__', None) or ''}.{getattr(fn, '__qualname__', repr(fn))}".lstrip(".")


def _own_peak_mb() -> float:
    """This process's peak RSS so far (the runner's; in memory, every worker's too)."""
    import resource  # pylint: disable=import-outside-toplevel

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(corpus: str, megabytes: int, mode: str, crc_profile: bool = False) -> dict:
    """One size in a fresh child process: its step seconds and its peak RSS in MB."""
    with tempfile.TemporaryDirectory() as folder:
        corpus_dir = os.path.join(folder, "corpus")
        os.makedirs(corpus_dir)
        build_corpus(corpus, corpus_dir, megabytes)
        result_path = os.path.join(folder, "result.json")
        command = [sys.executable, __file__, "--child", corpus_dir, folder, mode]
        command += ["--crc-profile"] if crc_profile else []
        with open(result_path, "w") as out:
            child = subprocess.Popen(command, stdout=out)
            tree_peak = TreePeak(child.pid)
            _, status, usage = os.wait4(child.pid, 0)
            tree_peak.stop()
        if status != 0:
            sys.exit(f"{megabytes} MB: the child failed (status {status})")
        with open(result_path) as f:
            result = json.load(f)
    result.update(megabytes=megabytes, peak_rss_mb=usage.ru_maxrss / 1024, peak_tree_rss_mb=tree_peak.peak / 2**20)
    return result


class TreePeak:
    """The peak, over time, of the summed RSS of `pid` and all its descendants."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.peak, self._pid, self._done = 0, pid, threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)
        self._thread.start()

    def _sample(self, interval_s: float) -> None:
        while not self._done.wait(interval_s):
            self.peak = max(self.peak, sum(_rss_bytes(p) for p in _tree(self._pid)))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _tree(pid: int) -> list:
    """`pid` and its descendants (vanished processes are skipped)."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next((x for x in f if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    except OSError:
        return 0
    return int(line.split()[1]) * 1024


def main() -> None:
    args = parse_args()
    if args.crc_profile and args.mode != "in_memory" and not args.child:
        sys.exit("--crc-profile counts in the runner's own process: use it with --mode in_memory")
    if args.child:
        crc = profile_crc() if args.crc_profile else None
        result = run_steps(*args.child)
        if crc is not None:
            result["crc"] = dict(crc, fn=_crc_fn_name())
        print(json.dumps(result))
        return
    rows = []
    for megabytes in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(args.corpus, megabytes, args.mode, args.crc_profile))
        row = rows[-1]
        print(
            f"{megabytes} MB: {row['seconds']}, peak RSS {row['peak_rss_mb']:.0f} MB, "
            f"runner's peak after each step {row['runner_peak_mb_after']}",
            flush=True,
        )
        if "crc" in row:
            crc, steps_s = row["crc"], sum(row["seconds"].values())
            print(
                f"{megabytes} MB: TFRecord checksums ({crc['fn']}): {crc['calls']:,} calls, "
                f"{crc['bytes'] / 1e6:.0f} MB, {crc['seconds']:.2f} s = {100 * crc['seconds'] / steps_s:.1f}% "
                f"of the three steps' {steps_s:.1f} s",
                flush=True,
            )
    print(f"\n{args.mode}, {os.cpu_count()} cores")
    header = ("train MB", "lines kept", "TextExampleGen s", "VocabGen s", "Tokenize s", "peak RSS MB", "tree MB")
    print("".join(f"{h:>{w}}" for h, w in zip(header, (9, 12, 18, 12, 12, 13, 9))))
    for row in rows:
        s = row["seconds"]
        print(
            f"{row['megabytes']:>9}{row['lines_kept']:>12,}{s['TextExampleGen']:>18.1f}{s['VocabGen']:>12.1f}"
            f"{s['Tokenize']:>12.1f}{row['peak_rss_mb']:>13.0f}{row['peak_tree_rss_mb']:>9.0f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": args.mode, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
