"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines and submits it.

TFX's `KubeflowV2DagRunner` turns the same `create_pipeline` into a PipelineJob whose
tasks run the pipeline image; the two platforms differ in the spec's schema version and
in how the Trainer asks for a GPU (`compile_pipeline`). The submission itself is the
platform SDK's own call (`aiplatform.PipelineJob`, `kfp.Client`); everything before it is
checked here, offline, before any work.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence

import yaml

from components.runtime.errors import ConfigError
from pipeline import image
from pipeline.config import EMBEDDED_CORPUS, PipelineConfig, TrainerResourcesConfig, is_uri

ORCHESTRATORS = ("local", "vertex", "kubeflow")
# MLflow stores every container can reach; a SQLite file or local folder cannot be.
REMOTE_TRACKING_SCHEMES = ("http", "https", "databricks")
# minute hour day-of-month month day-of-week, each in its range.
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")
_CRON_TIME_ZONE = re.compile(r"^(CRON_)?TZ=\S+\s+")
# What Kubernetes calls an NVIDIA GPU in a pod's resource limits (the device plugin's).
KUBERNETES_GPU = "nvidia.com/gpu"
# The node label GKE gives a GPU node: its GPU model, e.g. nvidia-l4.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# Credentials for a Kubeflow Pipelines API, read from the environment only (a flag would
# leave the secret in the shell's history and the process list): a bearer token, or the
# file of one that kfp re-reads before every request (kfp's own variable name).
KFP_TOKEN_ENV = "KFP_TOKEN"
KFP_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


def check_cron(cron: str) -> None:
    """A standard five-field cron expression (optionally `TZ=Area/City ` first)."""
    fields = _CRON_TIME_ZONE.sub("", cron.strip()).split()
    if len(fields) != len(_CRON_RANGES):
        raise ConfigError("--schedule", f"{cron!r} is not a five-field cron expression like '0 3 * * *'")
    for text, (low, high) in zip(fields, _CRON_RANGES):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            numbers = [int(n) for n in match.groups()[1:3] if n is not None] if match else None
            if not match or any(not low <= n <= high for n in numbers) or match.group(4) == "0":
                raise ConfigError("--schedule", f"{cron!r}: field {text!r} is not a cron field in {low}-{high}")


def _names_day_seven(cron: str) -> bool:
    """Whether the day-of-week field names day 7 (Sunday again), in a value or a range
    (a step such as */7 is not a day)."""
    days = cron.split()[-1]
    return any("7" in re.findall(r"\d+", item.split("/")[0]) for item in days.split(","))


def check_orchestrator(
    cfg: PipelineConfig,
    orchestrator: str,
    host: Optional[str],
    schedule: Optional[str],
    compile_only: Optional[str],
) -> None:
    """Everything a Kubeflow/Vertex run needs, checked before compiling; one ConfigError.

    `compile_only` is --compile-only's path; None for a run to submit or schedule.
    """
    cloud = cfg.cloud
    if schedule is not None:
        if compile_only is not None:
            raise ConfigError("--schedule", "creates a recurring run: it cannot go with --compile-only")
        check_cron(schedule)
    if orchestrator == "vertex" and compile_only is None:
        for flag, value in (("--project", cloud.project), ("--region", cloud.region)):
            if not value:
                raise ConfigError(flag, "is required to submit or schedule on Vertex AI Pipelines")
    if orchestrator == "kubeflow":
        _check_kubeflow(cfg, host, schedule, compile_only)
    if cfg.mlflow.kubernetes_secret is not None and (orchestrator != "kubeflow" or cfg.cloud.trainer.vertex_training):
        raise ConfigError(
            "mlflow.kubernetes_secret",
            "only Kubeflow Pipelines' pods see a Kubernetes Secret (Vertex AI's tasks and training jobs do not): "
            "use mlflow.secret_manager_secret or mlflow.id_token_audience",
        )
    if not cloud.image:
        raise ConfigError("--image", "is required: every task runs the pipeline image built from the Dockerfile")
    if not is_uri(cfg.resolved_pipeline_root):
        raise ConfigError(
            "--pipeline-root",
            f"must be a bucket URI such as gs://bucket/root for a {orchestrator} run "
            f"(tasks in other machines write the artifacts there), got {cfg.resolved_pipeline_root!r}",
        )
    if cfg.data.corpus != EMBEDDED_CORPUS and not cfg.data.corpus.startswith("gs://"):
        raise ConfigError(
            "data.corpus",
            f"must be 'embedded' or a gs:// folder for a {orchestrator} run (the tasks cannot see "
            f"this machine's files), got {cfg.data.corpus!r}",
        )
    scheme = cfg.resolved_tracking_uri().split(":", 1)[0]
    if scheme not in REMOTE_TRACKING_SCHEMES:
        raise ConfigError(
            "mlflow.tracking_uri",
            f"must be a tracking server every task can reach ({'/'.join(REMOTE_TRACKING_SCHEMES)}), "
            f"got a {scheme} store; set it in the config or MLFLOW_TRACKING_URI",
        )


def _check_kubeflow(
    cfg: PipelineConfig, host: Optional[str], schedule: Optional[str], compile_only: Optional[str]
) -> None:
    """What Kubeflow Pipelines takes unlike Vertex."""
    if compile_only is None and not host:
        raise ConfigError("--host", "is required to submit or schedule on Kubeflow Pipelines (its API URL)")
    if compile_only is not None and not compile_only.endswith((".yaml", ".yml")):
        raise ConfigError(
            "--compile-only",
            f"Kubeflow Pipelines takes a .yaml package (the pipeline spec, then the Trainer's Kubernetes "
            f"settings), got {compile_only!r}",
        )
    # KFP checks a cron with robfig/cron v1, which knows no time zone, and its scheduler
    # runs every schedule in one zone of its own.
    if schedule is not None and _CRON_TIME_ZONE.match(schedule.strip()):
        raise ConfigError(
            "--schedule",
            f"{schedule!r}: Kubeflow Pipelines takes no time zone per schedule (its scheduler runs every "
            "schedule in its CRON_SCHEDULE_TIMEZONE, else its own clock's, usually UTC): drop the TZ= prefix "
            "and give the time in that zone",
        )
    if schedule is not None and _names_day_seven(schedule):
        raise ConfigError(
            "--schedule",
            f"{schedule!r}: Kubeflow Pipelines' cron parser (robfig/cron v1) takes days of the week 0-6: "
            "write Sunday as 0, not 7",
        )
    trainer = cfg.cloud.trainer
    if trainer.accelerator_type and not trainer.vertex_training and not trainer.accelerator_type.startswith("NVIDIA_"):
        raise ConfigError(
            "cloud.trainer.accelerator_type",
            f"{trainer.accelerator_type!r}: a Kubeflow Trainer pod asks for NVIDIA GPUs only (NVIDIA_L4, ...)",
        )


def compile_pipeline(cfg: PipelineConfig, beam_pipeline_args: Sequence[str], orchestrator: str) -> List[Dict[str, Any]]:
    """The documents `orchestrator` takes for `cfg`, with tasks running `cfg.cloud.image`.

    Vertex: the PipelineJob, at TFX's default schema 2.0.0 (the one TFX's Vertex runs use).
    Kubeflow: its PipelineSpec at schema 2.1.0, whose constants are `runtimeValue.constant`:
    KFP's driver resolves only those and fails a task on 2.0.0's `constantValue`. Then,
    when the Trainer's pod asks for GPUs or the tasks read a Kubernetes Secret, the
    Kubernetes platform spec that says so (kfp.Client sends a package's second YAML
    document as the run's platform_spec).
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from components.tracking.credentials import auth_variables
    from components.tracking.mlflow_runs import tracking_variables
    from pipeline.dag import create_pipeline

    kubeflow = orchestrator == "kubeflow"
    corpus_dir = image.EMBEDDED_CORPUS_DIR if cfg.data.corpus == EMBEDDED_CORPUS else cfg.data.corpus
    pipeline = create_pipeline(cfg, corpus_dir, beam_pipeline_args)
    trainer = cfg.cloud.trainer
    if not trainer.vertex_training:
        trainer_component = next(c for c in pipeline.components if c.id == "Trainer")
        trainer_component.with_platform_config(_trainer_resources(trainer, kubeflow))
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=cfg.cloud.image, use_pipeline_spec_2_1=kubeflow
        )
    )
    job = runner.run(pipeline, write_out=False)
    # Where and how the executors report to MLflow (components/tracking/mlflow_runs.py).
    variables = tracking_variables(cfg.resolved_tracking_uri(), cfg.mlflow.experiment_name)
    # How they authenticate, by name only (components/tracking/credentials.py).
    variables.update(auth_variables(cfg.mlflow.secret_manager_secret, cfg.mlflow.id_token_audience))
    environment = [{"name": name, "value": value} for name, value in variables.items()]
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["env"] = environment
    _pass_pipeline_name(job["pipelineSpec"], cfg.pipeline_name, kubeflow)
    if not kubeflow:
        return [job]
    spec = job["pipelineSpec"]
    executors = _kubernetes_executors(cfg, spec)
    if executors:
        return [spec, {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}]
    return [spec]


# The tasks whose executors find the pipeline run's MLflow run (pipeline name and run id).
RUN_AWARE_TASKS = ("Trainer", "Evaluator")


def _run_aware_executors(spec: Dict[str, Any]) -> List[str]:
    """The executor labels of the tasks that find the pipeline run's MLflow run."""
    components = (spec["root"]["dag"]["tasks"][task]["componentRef"]["name"] for task in RUN_AWARE_TASKS)
    return [spec["components"][component]["executorLabel"] for component in components]


def _pass_pipeline_name(spec: Dict[str, Any], pipeline_name: str, kubeflow: bool) -> None:
    """Gives the executors that log to MLflow their pipeline name, and on Vertex its job id,
    which TFX's container entrypoint leaves out of their context
    (`components.runtime.pipeline_run`; Kubeflow's run id comes from the platform spec). A
    local Trainer's container only: on `vertex_training` the custom job gets them from it."""
    from components.runtime.pipeline_run import pipeline_flags

    for label in _run_aware_executors(spec):
        spec["deploymentSpec"]["executors"][label]["container"]["args"].extend(pipeline_flags(pipeline_name, kubeflow))


def _trainer_resources(trainer: TrainerResourcesConfig, kubeflow: bool) -> Any:
    """The Trainer container's ResourceSpec: CPUs, memory (GB) and GPUs.

    Vertex reads the accelerator type as its machine enum (NVIDIA_L4). KFP's driver puts
    the type into the pod's resource limits as it is, where it must be a Kubernetes
    resource name; the GPU model goes to the node selector instead.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=trainer.cpu, memory_limit=trainer.memory_gb
    )
    if trainer.accelerator_type:
        resources.accelerator.type = KUBERNETES_GPU if kubeflow else trainer.accelerator_type
        resources.accelerator.count = trainer.accelerator_count
    return resources


def _kubernetes_executors(cfg: PipelineConfig, spec: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The Kubernetes platform spec's executors: each one's kfp-kubernetes
    KubernetesExecutorConfig as JSON, for the executors that need one ({} for none).

    A GPU Trainer's pod goes on a node with its GPU model: GKE labels a GPU node with the
    model's Vertex name in lower case with hyphens (NVIDIA_L4 -> nvidia-l4, NVIDIA_TESLA_T4
    -> nvidia-tesla-t4). With `mlflow.kubernetes_secret`, every task's container gets the
    Secret's keys as MLflow's variables of the same names (`secretAsEnv`: the kubelet
    resolves them in the pod; the spec holds the Secret's name only). `secretName` is the
    field every KFP v2 driver reads (newer ones also take `secretNameParameter`). The
    Trainer's and the Evaluator's containers get the run's id from their pod's label
    (`fieldPathAsEnv`, which KFP's driver has read since kfp-kubernetes 1.1).
    """
    from components.runtime.pipeline_run import KUBEFLOW_RUN_ID_ENV, KUBEFLOW_RUN_ID_FIELD

    executors: Dict[str, Dict[str, Any]] = {}
    mlflow = cfg.mlflow
    if mlflow.kubernetes_secret:
        for label, executor in spec["deploymentSpec"]["executors"].items():
            if "container" in executor:  # a list each: a shared one would become a YAML alias
                keys = [{"secretKey": key, "envVar": key} for key in mlflow.kubernetes_secret_keys]
                executors[label] = {"secretAsEnv": [{"secretName": mlflow.kubernetes_secret, "keyToEnv": keys}]}
    # The run id, from the label KFP's API server puts on every pod of a run.
    for label in _run_aware_executors(spec):
        variable = {"name": KUBEFLOW_RUN_ID_ENV, "fieldPath": KUBEFLOW_RUN_ID_FIELD}
        executors.setdefault(label, {})["fieldPathAsEnv"] = [variable]
    trainer = cfg.cloud.trainer
    if trainer.accelerator_type and not trainer.vertex_training:
        component = spec["root"]["dag"]["tasks"]["Trainer"]["componentRef"]["name"]
        label = spec["components"][component]["executorLabel"]
        labels = {GKE_ACCELERATOR_LABEL: trainer.accelerator_type.lower().replace("_", "-")}
        executors.setdefault(label, {})["nodeSelector"] = {"labels": labels}
    return executors


def write_pipeline(documents: Sequence[Dict[str, Any]], path: str) -> str:
    """Writes the compiled documents to `path` and returns it.

    A YAML file holds them one after another, as kfp's compiler writes a pipeline and its
    platform spec; a JSON file holds Vertex's one PipelineJob (a Kubeflow package is
    .yaml: check_orchestrator). Keys are sorted: a stable file to diff and review.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith((".yaml", ".yml")):
            yaml.safe_dump_all(documents, f, sort_keys=True)
        else:
            (document,) = documents
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
    return path


# None keeps each task's compiled caching setting (on for every task: `create_pipeline`);
# True or False would override every task's, whatever the spec says.
CACHING = None


def submit_to_vertex(cfg: PipelineConfig, spec_path: str, schedule: Optional[str]) -> str:
    """Submits the compiled spec to Vertex AI Pipelines, or schedules it; returns its name.

    Its runs run as `cloud.service_account` (None: the project's Compute Engine default
    service account). A schedule's cron may start with TZ=Area/City; without, it is UTC.
    """
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name=cfg.pipeline_name,
        template_path=spec_path,
        pipeline_root=cfg.resolved_pipeline_root,
        enable_caching=CACHING,
        project=cfg.cloud.project,
        location=cfg.cloud.region,
    )
    service_account = cfg.cloud.service_account
    if schedule:
        schedule_name = f"{cfg.pipeline_name}-schedule"
        return job.create_schedule(
            cron=schedule, display_name=schedule_name, service_account=service_account
        ).resource_name
    job.submit(service_account=service_account)
    return job.resource_name


def submit_to_kubeflow(
    cfg: PipelineConfig, spec_path: str, host: str, schedule: Optional[str], namespace: Optional[str]
) -> str:
    """Submits the compiled spec to a Kubeflow Pipelines API, or schedules it; returns the id.

    `namespace` is a multi-user install's profile namespace, where the experiment and its
    runs go (None: kfp's choice, right for a single-user install).
    """
    client = _kubeflow_client(host, namespace)
    if schedule:
        experiment = client.create_experiment(cfg.pipeline_name, namespace=namespace)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=f"{cfg.pipeline_name}-schedule",
            # KFP's scheduler takes a seconds field first (a TZ= prefix is refused earlier).
            cron_expression="0 " + schedule,
            pipeline_package_path=spec_path,
            pipeline_root=cfg.resolved_pipeline_root,
            enable_caching=CACHING,
        )
        return recurring.recurring_run_id
    result = client.create_run_from_pipeline_package(
        spec_path,
        experiment_name=cfg.pipeline_name,
        run_name=cfg.pipeline_name,
        namespace=namespace,
        pipeline_root=cfg.resolved_pipeline_root,
        enable_caching=CACHING,
    )
    return result.run_id


def _kubeflow_client(host: str, namespace: Optional[str]) -> Any:
    """A kfp.Client for `host` with the credentials in the environment.

    $KFP_TOKEN goes as a bearer token; else $KF_PIPELINES_SA_TOKEN_PATH names a token file
    kfp re-reads before each request (a projected service-account token, which the kubelet
    rotates). kfp reads that variable itself only in a pod that gives it no host. A given
    namespace also spares kfp its guess of one (a healthz call and the pod's namespace file).
    """
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token_path = os.environ.get(KFP_TOKEN_PATH_ENV)
    return kfp.Client(
        host=host,
        namespace=namespace or "kubeflow",  # kfp's default, which it reads as "none chosen"
        existing_token=os.environ.get(KFP_TOKEN_ENV) or None,
        credentials=ServiceAccountTokenVolumeCredentials(token_path) if token_path else None,
    )
