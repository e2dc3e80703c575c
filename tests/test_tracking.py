"""The shared MLflow run: found by pipeline run id, ended FAILED on errors."""

import pytest
from mlflow.tracking import MlflowClient

from components.tracking.mlflow_runs import PIPELINE_RUN_ID_TAG, PipelineRun


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def test_components_of_one_pipeline_run_share_one_mlflow_run(tracking_uri, tmp_path):
    trainer = PipelineRun.for_pipeline_run(tracking_uri, "exp", "minigpt", "2026-01-01T00:00:00")
    evaluator = PipelineRun.for_pipeline_run(tracking_uri, "exp", "minigpt", "2026-01-01T00:00:00")
    other = PipelineRun.for_pipeline_run(tracking_uri, "exp", "minigpt", "2026-01-02T00:00:00")
    assert trainer.run_id == evaluator.run_id != other.run_id
    run = MlflowClient(tracking_uri).get_run(trainer.run_id)
    assert run.data.tags[PIPELINE_RUN_ID_TAG] == "2026-01-01T00:00:00"
    assert run.info.status == "RUNNING"
    # Artifacts live beside the SQLite file, not in the working directory's ./mlruns.
    assert run.info.artifact_uri.startswith(f"file://{tmp_path}/mlartifacts/")


def test_logging_and_finishing(tracking_uri):
    run = PipelineRun.for_pipeline_run(tracking_uri, "exp", "minigpt", "r1")
    run.log_params({"train.batch_size": 64, "eval.decoders.beam": {"num_beams": 10}})
    run.log_metrics({"loss": 2.5}, step=1)
    run.log_metrics({"loss": 2.0}, step=2)
    run.log_text("hello\n", "samples/greedy.txt")
    run.finish()
    client = MlflowClient(tracking_uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"train.batch_size": "64", "eval.decoders.beam": "{'num_beams': 10}"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")] == [(1, 2.5), (2, 2.0)]
    assert [f.path for f in client.list_artifacts(run.run_id, "samples")] == ["samples/greedy.txt"]


@pytest.mark.parametrize("error, status", [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_an_error_ends_the_run_failed_and_an_interrupt_killed(tracking_uri, error, status):
    run = PipelineRun.for_pipeline_run(tracking_uri, "exp", "minigpt", f"r-{status}")
    with pytest.raises(error):
        with run.failed_on_error():
            raise error
    assert MlflowClient(tracking_uri).get_run(run.run_id).info.status == status


def test_the_experiment_is_a_model_training_experiment_for_the_ui(tracking_uri):
    run = PipelineRun.for_pipeline_run(tracking_uri, "kind", "minigpt", "r-kind")
    experiment = MlflowClient(tracking_uri).get_experiment(run.client.get_run(run.run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
