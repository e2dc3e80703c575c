"""What `make run` prints at the end, read from ML Metadata, and the local run's MLflow safety net."""

import json

from ml_metadata.proto import metadata_store_pb2
from mlflow.tracking import MlflowClient
from tfx.orchestration import metadata

from components.data.formats import EVALUATION_FILE
from components.tracking.mlflow_runs import PipelineRun
from pipeline.config import load_config
from pipeline.local_run import end_open_mlflow_run
from pipeline.run_summary import latest_run, perplexities
from pipeline.summary import print_summary
from tests.conftest import TINY_CONFIG

COMPLETE, CACHED = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED


def record_pipeline_run(metadata_path, pipeline_run_id, states, outputs=None):
    """Writes what TFX records of a pipeline run: a context, executions and their outputs."""
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(str(metadata_path))) as m:
        store = m.store
        context_type = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
        context = metadata_store_pb2.Context(type_id=context_type, name=pipeline_run_id)
        (context.id,) = store.put_contexts([context])
        for component, state in states.items():
            execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name=f"components.{component}"))
            execution = metadata_store_pb2.Execution(type_id=execution_type, last_known_state=state)
            events = []
            for type_name, uri in (outputs or {}).get(component, {}).items():
                artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
                artifact = metadata_store_pb2.Artifact(type_id=artifact_type, uri=str(uri))
                events.append((artifact, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)))
            store.put_execution(execution, events, [context])


def _tiny(tmp_path):
    return load_config(TINY_CONFIG, [f"output_dir={tmp_path}"])


def test_no_metadata_store_means_no_run(tmp_path):
    assert latest_run(str(tmp_path / "metadata.sqlite")) is None


def test_latest_run_reads_states_outputs_and_the_evaluation(tmp_path):
    db = tmp_path / "metadata.sqlite"
    record_pipeline_run(db, "run-1", {"Trainer": COMPLETE})
    evaluation_dir = tmp_path / "evaluation"
    evaluation_dir.mkdir()
    (evaluation_dir / EVALUATION_FILE).write_text(json.dumps({"perplexity": 12.5}))
    record_pipeline_run(
        db,
        "run-2",
        {"Trainer": CACHED, "Evaluator": COMPLETE},
        {"Trainer": {"Model": tmp_path / "model"}, "Evaluator": {"ModelEvaluation": evaluation_dir}},
    )
    summary = latest_run(str(db))
    assert summary.pipeline_run_id == "run-2"
    assert summary.states == {"Trainer": "CACHED", "Evaluator": "COMPLETE"}
    assert summary.outputs == {"Model": str(tmp_path / "model"), "ModelEvaluation": str(evaluation_dir)}
    assert summary.evaluation == {"perplexity": 12.5}


def test_printed_summary_names_the_results_and_the_mlflow_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _tiny(tmp_path)
    mlflow_run = PipelineRun.for_pipeline_run(cfg.resolved_tracking_uri(), "minigpt", "p", "run-1")
    evaluation_dir = tmp_path / "evaluation"
    evaluation_dir.mkdir()
    result = {
        "perplexity": {"eval": {"perplexity": 123.456, "tokens": 99}, "test": {"perplexity": 130.5, "tokens": 80}},
        "mlflow_run_id": mlflow_run.run_id,
        "samples": {"greedy": "[BOS] the " + "cat " * 40, "beam": "[BOS] a dog"},
    }
    (evaluation_dir / EVALUATION_FILE).write_text(json.dumps(result))
    states = dict.fromkeys(["TextExampleGen", "VocabGen", "DecoderCheck", "Trainer", "Evaluator"], CACHED)
    record_pipeline_run(cfg.metadata_path, "run-2", states, {"Evaluator": {"ModelEvaluation": evaluation_dir}})
    print_summary(cfg, latest_run(cfg.metadata_path))
    out = capsys.readouterr().out
    assert "Pipeline run run-2: TextExampleGen CACHED, VocabGen CACHED, DecoderCheck CACHED" in out
    # The held-out split first; the eval split named as the one that chose the epoch.
    assert (
        "Test perplexity:  130.50 (token-weighted, 80 tokens; held-out test split)\n"
        "Eval perplexity:  123.46 (token-weighted, 99 tokens; eval split, which chose the kept epoch: biased low)\n"
    ) in out
    assert f"MLflow run:       {mlflow_run.run_id}" in out
    assert "(every component was cached: this is the run that produced the results)" in out
    assert "       greedy: [BOS] the cat cat" in out and "..." in out
    assert "         beam: [BOS] a dog\n" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db --port 5000" in out
    experiment_id = MlflowClient(cfg.resolved_tracking_uri()).get_run(mlflow_run.run_id).info.experiment_id
    assert f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{mlflow_run.run_id}" in out


def test_a_crash_outside_the_executors_ends_the_open_mlflow_run_failed(tmp_path, monkeypatch):
    """The local run's safety net: a run left RUNNING by the crash is ended FAILED; others are left alone."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _tiny(tmp_path)
    finished = PipelineRun.for_pipeline_run(cfg.resolved_tracking_uri(), "minigpt", "p", "run-1")
    finished.finish()
    record_pipeline_run(cfg.metadata_path, "run-1", {"Evaluator": COMPLETE})
    end_open_mlflow_run(cfg, "FAILED")
    client = MlflowClient(cfg.resolved_tracking_uri())
    assert client.get_run(finished.run_id).info.status == "FINISHED"

    crashed = PipelineRun.for_pipeline_run(cfg.resolved_tracking_uri(), "minigpt", "p", "run-2")
    record_pipeline_run(cfg.metadata_path, "run-2", {"Trainer": COMPLETE})
    end_open_mlflow_run(cfg, "FAILED")
    assert client.get_run(crashed.run_id).info.status == "FAILED"


def test_without_a_test_split_the_summary_says_the_eval_perplexity_is_the_only_one():
    only_eval = {"perplexity": {"eval": {"perplexity": 50.0, "tokens": 7}}}
    (row,) = perplexities(only_eval)
    assert row.split == "eval" and row.meaning.endswith("no test split: this is the only perplexity")
    assert perplexities(None) == []
    # An evaluation.json written before the test split (one eval perplexity) still reads.
    (old,) = perplexities({"perplexity": 12.5, "num_tokens": 99})
    assert (old.split, old.perplexity, old.tokens) == ("eval", 12.5, 99)
