"""TextExampleGen: the length filter, line accounting and bad-input handling."""

import gzip
import hashlib
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.data.formats import LINE_COUNTERS, example_text, parse_text, text_to_example
from components.runtime.errors import InputDataError
from components.text_example_gen import executor
from components.text_example_gen.component import TextExampleGen


def test_filter_keeps_lines_longer_than_min_bytes():
    ascii_kept = b"a" * 11
    ascii_boundary = b"a" * 10  # not > 10: dropped, as tf.strings.length(x) > N
    multibyte = "é".encode("utf-8") * 6  # 6 characters, 12 bytes: kept (bytes, not chars)
    not_utf8 = b"\xff" * 20
    with test_pipeline.TestPipeline() as p:
        kept = (
            p
            | beam.Create([ascii_kept, ascii_boundary, multibyte, not_utf8, b""])
            | beam.ParDo(executor._FilterLines(10, "train.txt"))
        )
        assert_that(kept, equal_to([ascii_kept, multibyte]))


def test_text_to_example_roundtrip():
    example = text_to_example("héllo".encode())
    assert example.features.feature["text"].bytes_list.value == ["héllo".encode()]
    assert example_text(example.SerializeToString()) == "héllo".encode()
    assert parse_text(tf.constant(example.SerializeToString())).numpy() == "héllo".encode()


def _run_executor(corpus_dir, out_dir, min_len=450, train="train.txt", eval_="valid.txt", test=None, dedup="none"):
    component = TextExampleGen(str(corpus_dir), train, eval_, min_len, test_pattern=test, dedup=dedup)
    exec_properties = dict(component.exec_properties)
    exec_properties["input_base"] = str(corpus_dir)
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties["input_config"], input_config)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    ex = executor.Executor(BaseBeamExecutor.Context(tmp_dir=str(out_dir)))
    ex.Do({}, {"examples": [examples]}, exec_properties)
    return examples


def _count_records(pattern):
    return sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP"))


def test_executor_writes_splits_and_records_counts(tiny_corpus, tmp_path):
    examples = _run_executor(tiny_corpus, tmp_path / "examples", test="test.txt")
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval", "test"]
    assert _count_records(os.path.join(artifact_utils.get_split_uri([examples], "test"), "*.gz")) == 30
    train_uri = artifact_utils.get_split_uri([examples], "train")
    assert _count_records(os.path.join(train_uri, "*.gz")) == 160
    assert _count_records(os.path.join(artifact_utils.get_split_uri([examples], "eval"), "*.gz")) == 40
    props = {k: examples.get_int_custom_property(k) for k in examples.mlmd_artifact.custom_properties
             if k.endswith(LINE_COUNTERS)}  # fmt: skip
    assert props["train_lines_read"] == 192
    assert props["train_lines_kept"] == 160
    assert props["train_lines_too_short"] == 32
    assert props["eval_lines_kept"] == 40
    assert (props["test_lines_read"], props["test_lines_kept"]) == (36, 30)
    assert props["train_lines_not_utf8"] == 0
    histogram = json.loads(examples.get_string_custom_property("train_length_histogram"))
    assert sum(histogram.values()) == 192 and sum(v for k, v in histogram.items() if int(k) < 450) <= 32
    # Where each split came from, and the sha256 of its bytes (the run's dataset digest).
    for split, name in (("train", "train.txt"), ("eval", "valid.txt"), ("test", "test.txt")):
        path = os.path.join(str(tiny_corpus), name)
        assert examples.get_string_custom_property(f"{split}_source") == path
        with open(path, "rb") as f:
            assert examples.get_string_custom_property(f"{split}_sha256") == hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("bad, accepted", [(2, True), (3, False)])
def test_undecodable_lines_up_to_one_percent_are_skipped_and_counted(tiny_corpus, tmp_path, bad, accepted):
    """200 lines read: 2 undecodable (exactly 1%) are skipped; 3 (1.5%) fail the file."""
    with open(tiny_corpus / "train.txt", "ab") as f:
        f.write((b"\xff\xfe" + b"x" * 500 + b"\n") * bad)
        f.write((b"y" * 500 + b"\n") * (8 - bad))
    assert len((tiny_corpus / "train.txt").read_bytes().splitlines()) == 200
    if not accepted:
        with pytest.raises(InputDataError, match=rf"train.txt: {bad} of 200 lines are not valid UTF-8"):
            _run_executor(tiny_corpus, tmp_path / "examples")
        assert not (tmp_path / "examples").exists()
        return
    examples = _run_executor(tiny_corpus, tmp_path / "examples")
    assert examples.get_int_custom_property("train_lines_not_utf8") == bad
    assert examples.get_int_custom_property("train_lines_kept") == 160 + 8 - bad


def test_no_line_passing_the_filter_fails_and_leaves_no_output(tiny_corpus, tmp_path):
    out = tmp_path / "examples"
    with pytest.raises(InputDataError, match=r"train.txt: no line of the train split is longer") as err:
        _run_executor(tiny_corpus, out, min_len=100_000)
    assert "min_training_seq_len" in str(err.value)
    assert not out.exists()


def test_file_in_another_encoding_names_the_file(tiny_corpus, tmp_path):
    text = (tiny_corpus / "valid.txt").read_text(encoding="utf-8")
    (tiny_corpus / "valid.txt").write_bytes(text.replace("e", "é").encode("latin-1", errors="replace"))
    with pytest.raises(InputDataError, match=r"valid.txt: \d+ of 48 lines are not valid UTF-8; re-encode"):
        _run_executor(tiny_corpus, tmp_path / "examples")


def test_component_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_training_seq_len"):
        TextExampleGen("/corpus", "train.txt", "valid.txt", -1)
    with pytest.raises(ValueError, match="pattern"):
        TextExampleGen("/corpus", "", "valid.txt", 450)
    with pytest.raises(ValueError, match="dedup"):
        TextExampleGen("/corpus", "train.txt", "valid.txt", 450, dedup="fuzzy")


def test_crlf_a_bom_nul_bytes_and_a_gzip_split_read_as_text(tiny_corpus, tmp_path):
    """Windows line endings and a byte-order mark are not part of the text; NUL bytes
    inside a line are kept as they are; a `.gz` split is decompressed."""
    lines = (tiny_corpus / "train.txt").read_bytes().splitlines()
    (tiny_corpus / "train.txt").write_bytes(executor.UTF8_BOM + b"\r\n".join(lines) + b"\r\n")
    valid = (tiny_corpus / "valid.txt").read_bytes().splitlines()
    valid[0] = valid[0][:100] + b"\x00\x00" + valid[0][100:]
    with gzip.open(tiny_corpus / "valid.txt.gz", "wb") as f:
        f.write(b"\n".join(valid) + b"\n")
    examples = _run_executor(tiny_corpus, tmp_path / "examples", eval_="valid.txt.gz")
    assert examples.get_int_custom_property("train_lines_read") == len(lines) == 192
    assert examples.get_int_custom_property("train_lines_kept") == 160
    assert examples.get_int_custom_property("eval_lines_kept") == 40
    train = [example_text(r) for r in _records(artifact_utils.get_split_uri([examples], "train"))]
    assert not any(t.endswith(b"\r") or t.startswith(executor.UTF8_BOM) for t in train)
    assert sorted(train) == sorted(line for line in lines if len(line) > 450)
    eval_texts = [example_text(r) for r in _records(artifact_utils.get_split_uri([examples], "eval"))]
    assert valid[0] in eval_texts


def _records(split_uri):
    files = tf.io.gfile.glob(os.path.join(split_uri, "*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_a_line_of_megabytes_is_skipped_counted_and_reported(tiny_corpus, tmp_path, caplog):
    huge = b"word " * 400_000  # 2 MB in one "paragraph"
    with open(tiny_corpus / "train.txt", "ab") as f:
        f.write(huge + b"\n")
    caplog.set_level("WARNING")
    examples = _run_executor(tiny_corpus, tmp_path / "examples")
    assert examples.get_int_custom_property("train_lines_too_long") == 1
    assert examples.get_int_custom_property("train_lines_kept") == 160
    assert "skipped 1 lines longer than data.max_line_bytes" in caplog.text


def test_exact_dedup_drops_repeated_paragraphs_deterministically(tiny_corpus, tmp_path):
    """`data.dedup: exact` keeps one copy of each paragraph, counts the others, and two
    runs write the same records in the same order."""
    with open(tiny_corpus / "train.txt", "rb") as f:
        long_lines = [line for line in f.read().splitlines() if len(line) > 450]
    with open(tiny_corpus / "train.txt", "ab") as f:
        f.write(b"\n".join(long_lines[:5] + long_lines[:2]) + b"\n")
    written = []
    for run in ("a", "b"):
        examples = _run_executor(tiny_corpus, tmp_path / run, dedup="exact")
        assert examples.get_int_custom_property("train_lines_kept") == 167
        assert examples.get_int_custom_property("train_lines_duplicate") == 7
        assert examples.get_int_custom_property("eval_lines_duplicate") == 0
        written.append([example_text(r) for r in _records(artifact_utils.get_split_uri([examples], "train"))])
    assert written[0] == written[1]
    assert sorted(written[0]) == sorted(set(long_lines)) and len(written[0]) == 160


def test_without_dedup_repeated_paragraphs_are_kept(tiny_corpus, tmp_path):
    with open(tiny_corpus / "train.txt", "rb") as f:
        first_long = next(line for line in f.read().splitlines() if len(line) > 450)
    with open(tiny_corpus / "train.txt", "ab") as f:
        f.write(first_long + b"\n")
    examples = _run_executor(tiny_corpus, tmp_path / "examples")
    assert examples.get_int_custom_property("train_lines_duplicate") == 0
    assert _count_records(os.path.join(artifact_utils.get_split_uri([examples], "train"), "*.gz")) == 161
