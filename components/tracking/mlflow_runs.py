"""One MLflow run per pipeline run, shared by every component that logs to it.

Components may run in different processes or containers, and a run id passed as a
component parameter would change every run and defeat TFX's cache. So each executor
finds the run by a tag holding TFX's pipeline run id (the same in every component of
one pipeline run) and creates it if it is the first to log.

Metric names follow what the MLflow UI (3.17) does with them. It makes a chart section
of the text before a name's last `/`, orders the sections by name, and puts names
without a `/` in a "Model metrics" section after them all. So the per-epoch curves are
`train/<name>` and `val/<name>` (the first sections a person sees), and one-value
summaries have no `/`: `eval.perplexity`, `decoder.<name>.<measure>`,
`model.num_parameters`, `train.best_epoch`, `val.best_perplexity`. With a `/`, those
single-bar charts would sort ahead of the curves (`decoder/...`, `eval/...`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from typing import Any, ContextManager, Dict, Iterable, Iterator, List, Mapping, Optional

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from components.runtime.errors import first_line
from components.runtime.paths import local_path

PIPELINE_RUN_ID_TAG = "tfx.pipeline_run_id"
PIPELINE_NAME_TAG = "tfx.pipeline_name"
# Where the MLflow run whose outputs a cached component reused was logged.
TRAINED_IN_RUN_TAG = "minigpt.trained_in_run"
ARTIFACT_DIR = "mlartifacts"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"
# MLflow's own variables. Where to report is not what to compute, so the Trainer reads
# them from its environment rather than from a parameter, which would be part of TFX's
# cache key and retrain the model when only the tracking server changed.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"


# MLflow's HTTP retries for a remote tracking server, bounded: its defaults (7 retries,
# backoff factor 2, a 120 s timeout) stall a run for minutes when the server is down.
# A variable the user already set wins.
HTTP_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class CorpusSplit(MetaDataset):
    """One split of a text corpus as an MLflow dataset: where it was read from, the sha256
    of its bytes as digest, and its line and token counts as profile."""

    def __init__(self, source: str, sha256: str, profile: Mapping[str, Any]):
        self._profile = dict(profile)
        with warnings.catch_warnings():  # a local path matches two equivalent source types
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            resolved = resolve_dataset_source(source)
        name = "/".join(source.rstrip("/").split("/")[-2:])  # e.g. "simplebooks-92-raw/train.txt"
        # MLflow keeps 36 characters of a digest; 16 hex digits of sha256 identify a corpus.
        super().__init__(resolved, name=name, digest=sha256[:16])

    @property
    def profile(self) -> Dict[str, Any]:
        return self._profile

    def to_dict(self) -> Dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def tracking_variables(tracking_uri: str, experiment_name: str) -> Dict[str, str]:
    """Every variable a component's process needs to report to MLflow (for containers too)."""
    retries = {name: os.environ.get(name, value) for name, value in HTTP_RETRY_ENV.items()}
    return {TRACKING_URI_ENV: tracking_uri, EXPERIMENT_NAME_ENV: experiment_name, **retries}


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables inside the block, then restores what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tracking_environment(tracking_uri: str, experiment_name: str) -> ContextManager[None]:
    """Sets MLflow's variables for the executors run inside the block, then restores them."""
    return _environment(tracking_variables(tracking_uri, experiment_name))


def check_reachable(tracking_uri: str, timeout_s: int = 5) -> Optional[str]:
    """None if an http(s) tracking server answers within `timeout_s` (one try, no retries);
    else why not. Other stores (sqlite, file) are not probed."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    with _environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}):
        try:
            MlflowClient(tracking_uri).search_experiments(max_results=1)
            return None
        except Exception as e:  # pylint: disable=broad-except  (connection refused, DNS, HTTP 5xx, auth)
            if "Connection refused" in str(e):  # the usual case, said without a page of urllib3
                return "connection refused"
            return first_line(e, 200)


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> List[str]:
    """Every artifact file of a run (under `path`), walking its folders."""
    paths: List[str] = []
    for info in client.list_artifacts(run_id, path):
        paths += artifact_paths(client, run_id, info.path) if info.is_dir else [info.path]
    return paths


def tracking_from_environment() -> Dict[str, str]:
    """{"tracking_uri", "experiment_name"} from MLflow's variables, which the runner sets.

    Raises:
      RuntimeError: a variable is unset (a runner that does not set them is misconfigured).
    """
    missing = [name for name in (TRACKING_URI_ENV, EXPERIMENT_NAME_ENV) if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not set for this component: pipeline/run.py sets them for local runs; "
            "on Kubeflow/Vertex set them in the component containers' environment."
        )
    return {"tracking_uri": os.environ[TRACKING_URI_ENV], "experiment_name": os.environ[EXPERIMENT_NAME_ENV]}


def default_artifact_location(tracking_uri: str) -> Optional[str]:
    """For a local SQLite store, keep artifacts beside the database, not in ./mlruns."""
    if tracking_uri.startswith("sqlite:///"):
        db_path = tracking_uri[len("sqlite:///") :]
        return "file://" + os.path.join(os.path.dirname(os.path.abspath(db_path)), ARTIFACT_DIR)
    return None


class PipelineRun:
    """The MLflow run of one pipeline run, logged to through an explicit client.

    No fluent `mlflow.start_run` state: a component logs to the run without taking
    ownership of it, and only the last component (or a failure) ends it.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    @classmethod
    def for_pipeline_run(
        cls, tracking_uri: str, experiment_name: str, pipeline_name: str, pipeline_run_id: str
    ) -> "PipelineRun":
        """Finds the run tagged with `pipeline_run_id`, or creates it."""
        client = MlflowClient(tracking_uri)
        found = find_run(client, experiment_name, pipeline_run_id)
        if found:
            return cls(client, found)
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(
                experiment_name,
                default_artifact_location(tracking_uri),
                # MLflow 3's UI opens a model-training experiment on runs and charts, not
                # on its GenAI overview (traces, token usage).
                tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT_KIND},
            )
        )
        run = client.create_run(
            experiment_id,
            run_name=f"{pipeline_name}-{pipeline_run_id}",
            tags={PIPELINE_RUN_ID_TAG: pipeline_run_id, PIPELINE_NAME_TAG: pipeline_name},
        )
        return cls(client, run.info.run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in sorted(metrics.items())])

    def log_datasets(self, datasets: Iterable[Mapping[str, Any]]) -> None:
        """Logs each split as an MLflow dataset input: its source, digest and profile.

        Each mapping holds `split` (the input's context: train, eval), `source` (the path
        or URI read), `sha256` and `profile` (counts); the UI lists them under
        "Datasets", and runs on the same data share a digest.
        """
        inputs = [
            DatasetInput(
                CorpusSplit(d["source"], d["sha256"], d["profile"])._to_mlflow_entity(),
                tags=[InputTag(MLFLOW_DATASET_CONTEXT, d["split"])],
            )
            for d in datasets
        ]
        if inputs:
            self.client.log_inputs(self.run_id, datasets=inputs)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib Figure as a PNG artifact; the figure is closed after."""
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

        try:
            self.client.log_figure(self.run_id, figure, artifact_file)
        finally:
            plt.close(figure)

    def log_training_curves(self, artifact_file: str = "plots/training_curves.png") -> None:
        """Loss and perplexity per epoch, train against val, drawn from the logged history."""
        from components.tracking import plots  # pylint: disable=import-outside-toplevel  (matplotlib)

        names = (f"{split}/{m}" for split in ("train", "val") for m in ("loss", "perplexity"))
        self.log_figure(plots.training_curves(self.metric_history(names)), artifact_file)

    def metric_history(self, names: Iterable[str]) -> Dict[str, List[tuple]]:
        """name -> [(step, value)] as logged, every step (across resumed attempts too)."""
        return {name: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, name)] for name in names}

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, columns: Mapping[str, Any], artifact_file: str) -> None:
        """A table the MLflow UI renders (column name -> values)."""
        self.client.log_table(self.run_id, dict(columns), artifact_file)

    def log_artifact(self, path: str, artifact_path: Optional[str] = None) -> None:
        """Logs a file, or a folder's files, from this machine or a URI (gs://: the client
        uploads from local disk only, so a URI's files are copied here first)."""
        with local_path(path) as local:
            if os.path.isdir(local):
                self.client.log_artifacts(self.run_id, local, artifact_path)
            else:
                self.client.log_artifact(self.run_id, local, artifact_path)

    @contextlib.contextmanager
    def resumed(self) -> Iterator[None]:
        """This run as MLflow's active (fluent) run, for APIs that only speak that
        (`mlflow.<flavor>.log_model`); left RUNNING after: only the last component ends it."""
        import mlflow

        mlflow.set_tracking_uri(self.client.tracking_uri)
        with mlflow.start_run(run_id=self.run_id):
            yield
            mlflow.end_run(status=RunStatus.to_string(RunStatus.RUNNING))

    def log_keras_model(self, model: Any, name: str = "model") -> str:
        """Logs `model` with MLflow's Keras flavor (loadable by `mlflow.keras.load_model`).

        Returns:
          The logged model's URI, `models:/<model id>`.
        """
        import mlflow.keras

        with self.resumed():
            info = mlflow.keras.log_model(
                model,
                name=name,
                pip_requirements=pinned_requirements(("keras", "keras-hub", "tensorflow", "tensorflow-text")),
            )
        return info.model_uri

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))

    @contextlib.contextmanager
    def failed_on_error(self) -> Iterator["PipelineRun"]:
        """Ends the run KILLED on an interrupt (Ctrl-C), FAILED on any other error, then re-raises."""
        try:
            yield self
        except KeyboardInterrupt:
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException:
            self.fail()
            raise


def pinned_requirements(names: Iterable[str]) -> List[str]:
    """Exact pins of the installed `names`, for a logged model (skips MLflow's slow inference)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


def find_run(client: MlflowClient, experiment_name: str, pipeline_run_id: str) -> Optional[str]:
    """Id of the MLflow run tagged with `pipeline_run_id`, or None (also if no experiment)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{PIPELINE_RUN_ID_TAG}` = '{pipeline_run_id}'", max_results=1
    )
    return runs[0].info.run_id if runs else None
