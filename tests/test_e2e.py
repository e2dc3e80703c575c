"""The whole TFX pipeline on the tiny config, run as a user runs it, then read back."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from components.data.lm_data import read_labels
from components.minigpt.decoders import DECODERS as DECODER_REGISTRY
from components.tracking.mlflow_runs import PIPELINE_RUN_ID_TAG, TRAINED_IN_RUN_TAG, artifact_paths
from pipeline.config import flatten, load_config
from pipeline.corpus import EMBEDDED_CORPUS_DIR as EMBEDDED
from pipeline.run_summary import NO_TEST_SPLIT, latest_run
from tests.conftest import REPO_ROOT, TINY_CONFIG, TINY_CORPUS, mlflow_runs, run_pipeline

pytestmark = pytest.mark.slow
DECODERS = ["beam", "contrastive", "greedy", "random", "top_k", "top_p"]
# The tiny corpus runs its Beam steps in memory (`auto`); this test runs them on worker
# processes, as a large corpus does.
MULTI_PROCESSING = "beam.direct_running_mode=multi_processing"
COMPONENTS = [
    "TextExampleGen", "VocabGen", "Tokenize", "DecoderCheck", "StatisticsGen", "SchemaGen", "ExampleValidator",
    "DataCheck", "Trainer", "Evaluator", "Pusher",
]  # fmt: skip


def test_pipeline_trains_evaluates_logs_and_caches(tmp_path):
    out, temp = tmp_path / "out", tmp_path / "tmp"
    temp.mkdir()
    # Run from outside the checkout: the config's relative corpus path is the config's.
    first = run_pipeline(out, cwd=tmp_path, tmp_dir=temp)
    assert first.returncode == 0, first.stderr[-3000:]
    # Nothing left behind in the temporary folder (TFX once left a 49 MB copy of itself
    # per Beam step there).
    assert sorted(os.listdir(temp)) == []
    # Quiet by default: a line per component with its wall time, no library chatter.
    assert "TextExampleGen: started" in first.stderr and "Evaluator: finished in" in first.stderr
    for noise in ("Unable to register cuDNN", "FutureWarning", "ArtifactQuery", "Downloading artifacts"):
        assert noise not in first.stdout + first.stderr, noise
    summary = latest_run(str(out / "metadata.sqlite"))
    assert summary.states == dict.fromkeys(COMPONENTS, "COMPLETE")

    # --- One MLflow run holding params, per-epoch metrics, samples and artifacts.
    client, runs = mlflow_runs(out)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags[PIPELINE_RUN_ID_TAG] == summary.pipeline_run_id
    params = run.data.params
    # Every config value is a param (Trainer and Evaluator each log their sections), but
    # where models are pushed: a new destination must not rerun the Evaluator, and where a
    # model went is its run's `pushed_to` tag.
    resolved = flatten(load_config(TINY_CONFIG, [f"output_dir={out}"]))
    assert set(resolved) - set(params) == {"serving.push_destination"}
    assert run.data.tags["pushed_to"].startswith(f"{out}/pipeline_root/serving/")
    assert params["train.batch_size"] == "16" and params["model.seq_len"] == "32"
    assert params["data.min_training_seq_len"] == "450" and params["vocab.vocabulary_size"] == "1000"
    assert params["eval.decoders.beam"] == "{'num_beams': 3}"
    assert int(params["model.vocabulary_size_learned"]) > 3
    for metric in ("train/loss", "train/perplexity", "val/loss", "val/perplexity", "train/seconds_per_epoch"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [1, 2], metric
    # The corpus is the run's two datasets, not metrics: source, content digest, counts.
    datasets = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert sorted(datasets) == ["eval", "test", "train"]
    assert not [name for name in run.data.metrics if name.startswith("data")]
    with open(os.path.join(TINY_CORPUS, "train.txt"), "rb") as f:
        assert datasets["train"].digest == hashlib.sha256(f.read()).hexdigest()[:16]
    assert json.loads(datasets["train"].source)["uri"] == os.path.join(TINY_CORPUS, "train.txt")
    train, eval_ = json.loads(datasets["train"].profile), json.loads(datasets["eval"].profile)
    assert train["lines_kept"] == 160 and eval_["lines_kept"] == 40 and train["lines_too_short"] == 32
    # Tokenize's counts: every kept line is one sequence; tiny lines overflow 32 tokens.
    assert train["sequences"] == 160 and eval_["sequences"] == 40
    assert 0 < train["truncated_share"] <= 1 and 0 <= train["unk_share"] < 0.05
    evaluation = summary.evaluation
    # The held-out test split's perplexity beside the eval split's (which chose the epoch).
    assert sorted(evaluation["perplexity"]) == ["eval", "test"]
    for split, result in evaluation["perplexity"].items():
        assert run.data.metrics[f"{split}.perplexity"] == pytest.approx(result["perplexity"])
        assert run.data.metrics[f"{split}.tokens"] == result["tokens"] > 0
        # Better than a uniform guess over the learned vocabulary, after two tiny epochs.
        assert 1 < result["perplexity"] < int(params["model.vocabulary_size_learned"])
    assert sorted(evaluation["samples"]) == DECODERS
    assert all(text.startswith("[BOS]") for text in evaluation["samples"].values())
    paths = artifact_paths(client, run.info.run_id)
    for name in DECODERS:
        assert f"samples/{name}.txt" in paths
        logged = client.download_artifacts(run.info.run_id, f"samples/{name}.txt", str(tmp_path))
        with open(logged, encoding="utf-8") as f:
            texts = f.read().strip().split("\n\n")
        # samples_per_decoder (2) from [BOS] (1 for a deterministic decoder), 2 from test-split
        # prompts; the first is the summary's.
        assert len(texts) == (4 if DECODER_REGISTRY[name].seeded else 3) and texts[0] == evaluation["samples"][name]
        assert f"decoder.{name}.distinct_2" in run.data.metrics
    assert sorted(row["decoder"] for row in evaluation["leaderboard"]) == DECODERS
    assert {"decoder_leaderboard.json", "decoder_samples.json"} <= set(paths)
    assert {"samples/epoch_001.txt", "samples/epoch_002.txt", "vocabulary/vocab.txt"} <= set(paths)
    assert {"model/minigpt.keras", "model/saved_model.pb", "model/vocab.txt"} <= set(paths)
    plots = {"plots/training_curves.png", "plots/line_lengths.png", "plots/decoder_leaderboard.png"}
    assert plots <= set(paths)
    # The run report: printed, beside the outputs and in the MLflow run; self-contained.
    assert f"Run report:       {out}/report.html" in first.stdout
    assert "report.html" in artifact_paths(client, run.info.run_id)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count("data:image/png;base64,") == 3
    for split, result in evaluation["perplexity"].items():
        assert f"<td>{split}</td><td>{result['perplexity']:.2f}</td>" in report
    for text in [*COMPONENTS, *DECODERS, "tiny_corpus/train.txt", "COMPLETE"]:
        assert text in report, text
    # The Keras model, and the text model registered as version 1 of `minigpt`.
    logged = {m.name: m.source_run_id for m in client.search_logged_models([run.info.experiment_id])}
    assert logged == {"minigpt": run.info.run_id, "minigpt-text": run.info.run_id}
    (version,) = client.search_model_versions("name = 'minigpt'")
    assert (str(version.version), version.run_id) == ("1", run.info.run_id)
    assert evaluation["registered_model"] == "models:/minigpt/1"
    # No champion to beat: blessed, pushed, and the champion; the summary and report say so.
    assert f"Model:            blessed, pushed as version 1 to {out}/pipeline_root/serving/" in first.stdout
    assert "blessed, pushed as version 1" in report
    # The data validation: its checks in the report, its outputs and values in the run.
    assert "<h3>Data checks</h3>" in report and "<td>eval.leaked_share</td>" in report
    assert {"data/checks.json"} <= set(paths) and any(p.startswith("data/statistics/") for p in paths)
    assert run.data.metrics["checks.eval.leaked_share"] == 0
    assert client.get_model_version_by_alias("minigpt", "champion").version == 1
    assert f"MLflow run:       {run.info.run_id}" in first.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db" in first.stdout
    assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in first.stdout

    # --- Unchanged inputs: every component is served from TFX's cache, nothing retrains,
    # and the summary points at the MLflow run that produced the cached results.
    second = run_pipeline(out)
    assert second.returncode == 0, second.stderr[-3000:]
    cached = latest_run(str(out / "metadata.sqlite"))
    assert cached.pipeline_run_id != summary.pipeline_run_id
    assert set(cached.states.values()) == {"CACHED"}
    assert len(mlflow_runs(out)[1]) == 1
    assert f"MLflow run:       {run.info.run_id}" in second.stdout

    # --- Only evaluation or tracking settings changed: the Trainer is served from the
    # cache, the Evaluator reruns into a new MLflow run that links to the run that trained
    # and records the training params, its own new values and only the decoders it ran.
    other_store = f"sqlite:///{tmp_path}/other-mlflow.db"
    reruns = [
        (["eval.seed=7"], {"eval.seed": "7"}, DECODERS),
        (["eval.decoders={top_k: {k: 5}}"], {"eval.decoders.top_k": "{'k': 5}"}, ["top_k"]),
        (["eval.max_batches=1", "eval.decoders={greedy: {}}"], {"eval.max_batches": "1"}, ["greedy"]),
        (
            ["eval.num_tokens_to_generate=5", "eval.decoders={greedy: {}}"],
            {"eval.num_tokens_to_generate": "5"},
            ["greedy"],
        ),
        (
            [f"mlflow.tracking_uri={other_store}", "eval.decoders={greedy: {}}"],
            {"mlflow.tracking_uri": other_store},
            ["greedy"],
        ),
    ]
    for overrides, new_values, decoders in reruns:
        result = run_pipeline(out, *overrides)
        assert result.returncode == 0, (overrides, result.stderr[-3000:])
        states = latest_run(str(out / "metadata.sqlite")).states
        assert states["Trainer"] == "CACHED" and states["Evaluator"] == "COMPLETE", (overrides, states)
        client, runs = mlflow_runs(out, other_store if "mlflow.tracking_uri" in new_values else None)
        rerun = runs[-1]
        assert rerun.info.run_id != run.info.run_id
        assert rerun.info.status == "FINISHED", overrides
        assert rerun.data.tags[TRAINED_IN_RUN_TAG] == run.info.run_id
        assert {k: rerun.data.params[k] for k in new_values} == new_values
        assert rerun.data.params["train.batch_size"] == "16"
        assert rerun.data.params["model.vocabulary_size_learned"] == params["model.vocabulary_size_learned"]
        ran = sorted(k.rsplit(".", 1)[-1] for k in rerun.data.params if k.startswith("eval.decoders."))
        assert ran == sorted(decoders), overrides
        assert artifact_paths(client, rerun.info.run_id, "samples") == [f"samples/{d}.txt" for d in sorted(decoders)]
        assert f"MLflow run:       {rerun.info.run_id}" in result.stdout
    # The first run and the four reruns that logged here (the last logged to the other store).
    assert len(mlflow_runs(out)[1]) == 1 + 4


def test_bad_data_fails_in_one_line_without_training(tmp_path):
    out = tmp_path / "out"
    result = run_pipeline(out, "data.min_training_seq_len=100000")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "train.txt: no line of the train split is longer than data.min_training_seq_len" in result.stderr
    assert "Traceback" not in result.stderr
    assert latest_run(str(out / "metadata.sqlite")).states == {"TextExampleGen": "FAILED"}
    assert mlflow_runs(out)[1] == []


def test_a_decoder_the_learned_vocabulary_cannot_hold_stops_the_run_before_training(tmp_path):
    out = tmp_path / "out"
    # The tiny corpus learns ~520 tokens of the 1000 asked for: k=900 passes the config
    # check and is caught by DecoderCheck once the vocabulary is known.
    result = run_pipeline(out, "eval.decoders={top_k: {k: 900}}")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config error: eval.decoders.top_k.k: 900 exceeds the learned vocabulary (")
    assert "Traceback" not in result.stderr
    states = latest_run(str(out / "metadata.sqlite")).states
    assert states == {"TextExampleGen": "COMPLETE", "VocabGen": "COMPLETE", "DecoderCheck": "FAILED"}
    assert mlflow_runs(out)[1] == []


def test_ctrl_c_exits_in_seconds_ends_the_run_killed_and_the_next_run_resumes(tmp_path):
    """A real SIGINT to `pipeline/run.py` while the Trainer trains, as Ctrl-C sends."""
    out = tmp_path / "out"
    cmd = [sys.executable, f"{REPO_ROOT}/pipeline/run.py", "--config", TINY_CONFIG, "--set", f"output_dir={out}",
           "--set", "train.epochs=30", "--set", MULTI_PROCESSING]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # wait until an epoch has been logged
        if "Epoch 2" in line:
            break
    sent = time.time()
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130 and time.time() - sent < 30, output[-2000:]
    assert "interrupted: the pipeline's MLflow run ended KILLED" in output
    client, runs = mlflow_runs(out)
    assert [r.info.status for r in runs] == ["KILLED"]
    # The next run works, upstream components cached.
    again = run_pipeline(out, "train.epochs=3", MULTI_PROCESSING)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = latest_run(str(out / "metadata.sqlite"))
    assert summary.states["Tokenize"] == "CACHED" and summary.states["Evaluator"] == "COMPLETE"


def test_a_second_run_in_the_folder_is_refused_and_a_killed_run_is_ended_by_the_next(tmp_path):
    """SIGKILL leaves no chance to clean up: the next run in the folder ends the MLflow run
    FAILED. While a run is alive, another in the same folder is refused at once."""
    out = tmp_path / "out"
    cmd = [sys.executable, f"{REPO_ROOT}/pipeline/run.py", "--config", TINY_CONFIG, "--set", f"output_dir={out}",
           "--set", "train.epochs=60"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # the first component runs: the folder is held
        if "TextExampleGen: started" in line:
            break
    started = time.time()
    second = run_pipeline(out)
    assert second.returncode == 1 and time.time() - started < 30
    assert f"is in use by another pipeline run (pid {process.pid}, started" in second.stderr
    assert "Traceback" not in second.stderr
    for line in process.stdout:  # training: the MLflow run exists and is RUNNING
        if "Epoch 3/" in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    (killed,) = mlflow_runs(out)[1]
    assert killed.info.status == "RUNNING"  # nobody could end it
    # The same command again: upstream cached, training resumes after the last finished
    # epoch, the killed run is ended and both runs point at each other.
    again = run_pipeline(out, "train.epochs=60")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"MLflow run {killed.info.run_id} was left RUNNING by a killed run of this folder" in again.stdout
    states = latest_run(str(out / "metadata.sqlite")).states
    assert states["Tokenize"] == "CACHED" and states["Trainer"] == "COMPLETE"
    client, (old, new) = mlflow_runs(out)
    assert (old.info.status, new.info.status) == ("FAILED", "FINISHED")
    assert "died" in old.data.tags["minigpt.ended_by"]
    assert old.data.tags["minigpt.continued_by"] == new.info.run_id
    assert new.data.tags["minigpt.after_killed_runs"] == old.info.run_id
    done = [m.step for m in client.get_metric_history(old.info.run_id, "train/loss")]
    resumed = [m.step for m in client.get_metric_history(new.info.run_id, "train/loss")]
    assert 2 <= len(done) < 60 and resumed == list(range(max(done) + 1, 61))  # at most the killed epoch redone


SECRETS = {"MINIGPT_TEST_API_KEY": "sk-test-4f1d9c", "MY_SERVICE_TOKEN": "tok-7b2e90", "DB_SECRET": "pw-31c8aa"}


def _records_as_written(split_dir: str) -> list:
    """A split's serialized records in the order a reader meets them (files by name)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _shuffled_shards(corpus, folder) -> list:
    """The corpus with its train lines in another order, over three files, and its other
    splits' lines reversed; the overrides that read it."""
    folder.mkdir()
    lines = (corpus / "train.txt").read_bytes().splitlines(keepends=True)
    order = np.random.default_rng(0).permutation(len(lines))
    for shard in range(3):
        (folder / f"train-{shard}.txt").write_bytes(b"".join(lines[i] for i in order[shard::3]))
    for name in ("valid.txt", "test.txt"):
        (folder / name).write_bytes(b"".join(reversed((corpus / name).read_bytes().splitlines(keepends=True))))
    return [f"data.corpus={folder}", "data.train_file=train-*.txt"]


def test_two_runs_in_two_folders_learn_the_same_and_leak_no_secret(tmp_path, monkeypatch):
    """Same config and seed: the same vocabulary, token ids, first-epoch loss and
    perplexities, though the second run reads its lines in another order from three train
    files (so Beam writes its records in another order: checked). Secrets in the
    environment appear in no param, tag, log line or text artifact."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    results, written = [], []
    shuffled = _shuffled_shards(pathlib.Path(TINY_CORPUS), tmp_path / "shuffled")
    for name, overrides in (("a", []), ("b", shuffled)):
        out = tmp_path / name
        result = run_pipeline(out, *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = latest_run(str(out / "metadata.sqlite"))
        client, (run,) = mlflow_runs(out)
        with open(os.path.join(summary.outputs["components.Vocabulary"], "vocab.txt"), encoding="utf-8") as f:
            vocab = f.read()
        train_ids = os.path.join(summary.outputs["Examples"], "Split-train")
        written.append(_records_as_written(train_ids))
        ids = read_labels([os.path.join(train_ids, "*")], 32, "train")
        loss = client.get_metric_history(run.info.run_id, "train/loss")[0].value
        perplexity = {split: r["perplexity"] for split, r in summary.evaluation["perplexity"].items()}
        results.append((vocab, ids, loss, perplexity))
        # No secret anywhere a person or a server would see it.
        texts = [result.stdout, result.stderr, json.dumps(run.data.params), json.dumps(run.data.tags)]
        for path in artifact_paths(client, run.info.run_id):
            if path.endswith((".txt", ".json", ".html", ".yaml", "MLmodel")):
                with open(client.download_artifacts(run.info.run_id, path, str(tmp_path)), errors="replace") as f:
                    texts.append(f.read())
        for value in SECRETS.values():
            assert not [t for t in texts if value in t], value
    # The same records, written in another order: what the equalities below are robust to.
    assert written[0] != written[1] and sorted(written[0]) == sorted(written[1])
    (vocab_a, ids_a, loss_a, ppl_a), (vocab_b, ids_b, loss_b, ppl_b) = results
    assert vocab_a == vocab_b
    np.testing.assert_array_equal(ids_a, ids_b)
    assert abs(loss_a - loss_b) < 1e-5
    assert ppl_a.keys() == ppl_b.keys() == {"eval", "test"}
    for split in ppl_a:
        assert ppl_a[split] == pytest.approx(ppl_b[split], rel=1e-5)


def test_a_run_killed_in_a_beam_step_is_rerun_and_its_half_output_never_consumed(tmp_path):
    """SIGKILL while TextExampleGen writes: the same command completes; ML Metadata shows
    the killed execution CANCELED, and no component ever read an output of it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_bytes((pathlib.Path(EMBEDDED) / "train.txt").read_bytes() * 8)  # ~37 MB
    shutil.copy(pathlib.Path(EMBEDDED) / "valid.txt", corpus / "valid.txt")
    out = tmp_path / "out"
    # The train split is 8 copies of one file: DataCheck would stop the run on them.
    overrides = [f"data.corpus={corpus}", "vocab.vocabulary_size=2000", "data.checks.max_duplicate_share=1.0"]
    cmd = [sys.executable, f"{REPO_ROOT}/pipeline/run.py", "--config", TINY_CONFIG, "--set", f"output_dir={out}"]
    for item in overrides:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "TextExampleGen: started" in line:
            break
    time.sleep(2)  # reading and writing the examples (~10 s for this corpus)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    again = run_pipeline(out, *overrides)
    assert again.returncode == 0, again.stderr[-3000:]
    # This corpus has no test.txt: the run says so, and what its one perplexity is.
    assert f"No test split ({corpus}/test.txt does not exist)" in again.stdout
    assert f"chose the kept epoch: biased low; {NO_TEST_SPLIT})" in again.stdout
    assert "TextExampleGen (execution 1) was left RUNNING by a killed run of this folder" in again.stdout
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(str(out / "metadata.sqlite"))) as m:
        killed = m.store.get_executions_by_id([1])[0]
        assert killed.last_known_state == metadata_store_pb2.Execution.CANCELED
        events = m.store.get_events_by_execution_ids([e.id for e in m.store.get_executions()])
    half_written = {e.artifact_id for e in events if e.execution_id == 1 and e.type == metadata_store_pb2.Event.OUTPUT}
    consumed = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT}
    assert not half_written & consumed
    assert latest_run(str(out / "metadata.sqlite")).states["Evaluator"] == "COMPLETE"
