"""DataCheck: each check's value on crafted corpora, the one-line stop on a failure (a
first run's too), and the drift against the champion's training statistics."""

import json
import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import Channel, standard_artifacts
from tfx.utils import io_utils

from components.data.artifact_types import DataChecks, Vocabulary
from components.data_check.component import DataCheck
from components.data_check.config import DataChecksConfig
from components.data_check.executor import Executor
from components.runtime.errors import InputDataError
from tests.conftest import register_champion, write_examples, write_token_examples

SEQ_LEN = 8
LONG = [f"paragraph {i} ".encode() * 5 for i in range(40)]


def _stats_artifact(path, rows_by_split):
    """StatisticsGen's layout: Split-<name>/FeatureStats.pb of the token-id rows."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(path)
    artifact.split_names = json.dumps(sorted(rows_by_split))
    for split, rows in rows_by_split.items():
        write_token_examples(path / "data" / split / "data.gz", rows)
        stats = tfdv.generate_statistics_from_tfrecord(str(path / "data" / split / "*"))
        os.makedirs(path / f"Split-{split}")
        io_utils.write_bytes_file(str(path / f"Split-{split}" / "FeatureStats.pb"), stats.SerializeToString())
    return artifact


VOCAB = ["[PAD]", "[UNK]", "[BOS]", *(f"t{i}" for i in range(13))]


def _run(
    tmp_path,
    splits,
    counts,
    ids=None,
    baseline_ids=None,
    anomalies=None,
    thresholds=DataChecksConfig(),
    champion_vocab=VOCAB,
    failing=False,
    counts_as_doubles=False,
):
    """The executor on text `splits` (split -> paragraphs), `counts` (split -> line and token
    counts), token `ids` (statistics of the train split) and, given `baseline_ids`, an MLflow
    champion (over `champion_vocab`) whose training statistics are those ids'. `failing`:
    a check must fail (and stop the run); the summary is written either way."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = json.dumps(list(splits))
    for split, lines in splits.items():
        write_examples(tmp_path / "examples" / f"Split-{split}" / "data.gz", lines)
    token_ids = standard_artifacts.Examples()
    token_ids.split_names = json.dumps(list(splits))
    for split, split_counts in counts.items():
        for name, value in split_counts.items():
            if counts_as_doubles:  # as TFX's Kubeflow/Vertex entrypoint hands them over: JSON numbers
                token_ids.set_json_value_custom_property(f"{split}_{name}", float(value))
            else:
                token_ids.set_int_custom_property(f"{split}_{name}", value)
    ids = ids or [[5, 6, 7, 8, 9, 10, 11, 12]] * 20
    statistics = _stats_artifact(tmp_path / "statistics", {"train": ids})
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    train_statistics = tfdv.load_stats_binary(str(tmp_path / "statistics" / "Split-train" / "FeatureStats.pb"))
    inferred = tfdv.infer_schema(train_statistics)
    io_utils.write_pbtxt_file(str(tmp_path / "schema" / "schema.pbtxt"), inferred)
    validated = standard_artifacts.ExampleAnomalies()
    validated.uri = str(tmp_path / "anomalies")
    validated.split_names = json.dumps(list(splits))
    for split in splits:
        found = tfdv.validate_statistics(train_statistics, inferred)
        if anomalies and split in anomalies:
            found.anomaly_info["ids"].short_description = anomalies[split]
        diff_path = tmp_path / "anomalies" / f"Split-{split}" / "SchemaDiff.pb"
        io_utils.write_bytes_file(str(diff_path), found.SerializeToString())
    inputs = {
        "examples": [examples],
        "token_ids": [token_ids],
        "statistics": [statistics],
        "schema": [schema],
        "anomalies": [validated],
    }
    vocabulary = Vocabulary()
    vocabulary.uri = str(tmp_path / "vocabulary")
    os.makedirs(vocabulary.uri)
    (tmp_path / "vocabulary" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    inputs["vocabulary"] = [vocabulary]
    if baseline_ids is not None:
        baseline = _stats_artifact(tmp_path / "champion_statistics", {"train": baseline_ids}).uri
        tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
        register_champion(tracking_uri, str(tmp_path / "champion"), champion_vocab, statistics_uri=baseline)
    result = DataChecks()
    result.uri = str(tmp_path / "result")
    component = DataCheck(
        *(Channel(type=t) for t in (standard_artifacts.Examples, standard_artifacts.Examples)),
        statistics=Channel(type=standard_artifacts.ExampleStatistics),
        schema=Channel(type=standard_artifacts.Schema),
        anomalies=Channel(type=standard_artifacts.ExampleAnomalies),
        thresholds=thresholds,
        seq_len=SEQ_LEN,
        vocabulary=Channel(type=Vocabulary),
    )
    try:
        Executor(BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"))).Do(
            inputs, {"result": [result]}, component.exec_properties
        )
    except InputDataError:
        if not failing:
            raise
    else:
        assert not failing, "expected a failed check"
    summary = json.loads((tmp_path / "result" / DataChecks.FILE_NAME).read_text())
    return {check["name"]: check for check in summary["checks"]}, summary


def _counts(read=100, kept=100, sequences=40, tokens=320, unk=0):
    return {"lines_read": read, "lines_kept": kept, "sequences": sequences, "tokens": tokens, "unk_tokens": unk}


CLEAN = {"train": LONG[:30], "eval": LONG[30:40]}
CLEAN_COUNTS = {"train": _counts(sequences=30, tokens=240), "eval": _counts(sequences=10, tokens=80)}


@pytest.fixture(autouse=True)
def tracking(tmp_path, monkeypatch):
    """An MLflow store of this test's own, where the executor looks for the champion."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")


def test_a_clean_corpus_passes_every_check_and_the_summary_lists_them(tmp_path):
    checks, summary = _run(tmp_path, CLEAN, CLEAN_COUNTS)
    assert set(checks) == {
        "train.kept_share", "train.unk_share", "train.mean_tokens", "eval.kept_share", "eval.unk_share",
        "eval.mean_tokens", "train.duplicate_share", "eval.leaked_share", "train.schema_anomalies",
        "eval.schema_anomalies",
    }  # fmt: skip
    assert all(check["passed"] for check in checks.values())
    assert set(checks["train.kept_share"]) == {"name", "value", "threshold", "passed"}


def test_counts_that_arrive_as_doubles_as_under_the_platforms_launchers_read_the_same(tmp_path):
    checks, _ = _run(tmp_path, CLEAN, CLEAN_COUNTS, counts_as_doubles=True)
    assert checks["train.kept_share"]["value"] == 1.0 and checks["train.mean_tokens"]["value"] == 8.0


def test_duplicates_and_leakage_are_counted(tmp_path):
    splits = {"train": LONG[:30] + LONG[:3] + LONG[:1], "eval": LONG[30:38] + LONG[5:7]}
    counts = {"train": _counts(sequences=34, tokens=272), "eval": _counts(sequences=10, tokens=80)}
    checks, _ = _run(tmp_path, splits, counts, failing=True)
    assert checks["train.duplicate_share"]["value"] == pytest.approx(4 / 34)  # 3 + 1 extra copies
    assert checks["eval.leaked_share"]["value"] == pytest.approx(2 / 10)
    assert not checks["train.duplicate_share"]["passed"] and not checks["eval.leaked_share"]["passed"]


def test_many_short_lines_and_many_unk_fail_their_checks(tmp_path):
    counts = {
        "train": _counts(read=1000, kept=10, sequences=30, tokens=60, unk=30),
        "eval": _counts(sequences=10, tokens=80),
    }
    checks, _ = _run(tmp_path, CLEAN, counts, failing=True)
    assert checks["train.kept_share"]["value"] == pytest.approx(0.01) and not checks["train.kept_share"]["passed"]
    assert checks["train.unk_share"]["value"] == pytest.approx(0.5) and not checks["train.unk_share"]["passed"]
    assert checks["train.mean_tokens"]["value"] == pytest.approx(2.0)
    assert checks["train.mean_tokens"]["threshold"] == pytest.approx(0.5 * SEQ_LEN)
    assert checks["eval.kept_share"]["passed"]


@pytest.mark.parametrize(
    "counts, splits, anomalies, message",
    [
        (
            {**CLEAN_COUNTS, "train": _counts(read=1000, kept=10, sequences=30, tokens=240)},
            CLEAN,
            None,
            "data check train.kept_share failed: the share of the train split's lines that pass the length filter "
            "is 0.01, below the minimum 0.02 (data.checks.min_kept_share)",
        ),
        (
            {**CLEAN_COUNTS, "eval": _counts(sequences=10, tokens=80, unk=40)},
            CLEAN,
            None,
            "data check eval.unk_share failed: the share of the eval split's tokens that are [UNK] is 0.5, above "
            "the maximum 0.1 (data.checks.max_unk_share)",
        ),
        (
            {**CLEAN_COUNTS, "train": _counts(sequences=30, tokens=60)},
            CLEAN,
            None,
            "data check train.mean_tokens failed: the mean tokens per train sequence (the threshold is that share of "
            "model.seq_len 8) is 2, below the minimum 4 (data.checks.min_mean_tokens_share)",
        ),
        (
            {**CLEAN_COUNTS, "train": _counts(sequences=34, tokens=272)},
            {**CLEAN, "train": LONG[:30] + LONG[:4]},
            None,
            "data check train.duplicate_share failed: the share of the train split's paragraphs that are exact copies "
            "of another (data.dedup: exact drops them) is 0.1176, above the maximum 0.01",
        ),
        (
            CLEAN_COUNTS,
            {**CLEAN, "eval": LONG[30:39] + LONG[:1]},
            None,
            "data check eval.leaked_share failed: the share of the eval split's paragraphs that are also in the train "
            "split is 0.1, above the maximum 0.005 (data.checks.max_leaked_share)",
        ),
        (
            CLEAN_COUNTS,
            CLEAN,
            {"eval": "Out-of-range values"},
            "data check eval.schema_anomalies failed: the number of features of the eval split's statistics that "
            "break the schema (first: ids: Out-of-range values) is 1, above the maximum 0 (data.schema_file)",
        ),
    ],
)
def test_a_failing_check_stops_the_run_in_one_line_champion_or_not(tmp_path, counts, splits, anomalies, message):
    """A first run (no champion) is gated too: only the drift needs one."""
    with pytest.raises(InputDataError) as err:
        _run(tmp_path, splits, counts, anomalies=anomalies)
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_drift_is_measured_against_the_champions_statistics_under_the_same_vocabulary(tmp_path):
    first, _ = _run(tmp_path / "first", CLEAN, CLEAN_COUNTS)
    assert "train.drift" not in first  # no champion yet: nothing to compare with
    same, _ = _run(tmp_path / "same", CLEAN, CLEAN_COUNTS, baseline_ids=[[5, 6, 7, 8, 9, 10, 11, 12]] * 20)
    assert same["train.drift"]["value"] == pytest.approx(0.0, abs=1e-6) and same["train.drift"]["passed"]
    moved = [[4000, 4001, 4002, 4003]] * 20
    with pytest.raises(InputDataError, match=r"data check train\.drift failed: .* is 1, above the maximum 0\.05"):
        _run(tmp_path / "moved", CLEAN, CLEAN_COUNTS, baseline_ids=moved)
    # Under another vocabulary the ids name other tokens: not measured.
    other, _ = _run(tmp_path / "other", CLEAN, CLEAN_COUNTS, baseline_ids=moved, champion_vocab=[*VOCAB[:-1], "x"])
    assert "train.drift" not in other


def test_thresholds_reach_the_executor_as_the_config_holds_them():
    component = DataCheck(
        *(Channel(type=standard_artifacts.Examples) for _ in range(2)),
        statistics=Channel(type=standard_artifacts.ExampleStatistics),
        schema=Channel(type=standard_artifacts.Schema),
        anomalies=Channel(type=standard_artifacts.ExampleAnomalies),
        thresholds=DataChecksConfig(max_drift=0.2),
        seq_len=SEQ_LEN,
        vocabulary=Channel(type=Vocabulary),
    )
    assert DataChecksConfig(**json.loads(component.exec_properties["thresholds"])) == DataChecksConfig(max_drift=0.2)
