"""Compiling for Kubeflow Pipelines v2 / Vertex AI and submitting, up to the network call.

The golden specs are checked twice: against the files (any change is reviewed), and with
the platform's own protos from kfp-pipeline-spec (what Vertex/Kubeflow will parse).
"""

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from typing import NamedTuple, Optional

import google.auth
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base.base_executor import BaseExecutor
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

from components.runtime.pipeline_run import pipeline_run
from pipeline import run
from pipeline.kubeflow import _names_day_seven, check_cron
from tests.conftest import REPO_ROOT
from tests.golden.spec import GOLDEN_PATHS, VERTEX_CONFIG, golden, normalized

ORDER = ["TextExampleGen", "VocabGen", "DecoderCheck", "Tokenize", "StatisticsGen", "SchemaGen", "ExampleValidator",
         "DataCheck", "Trainer", "Evaluator", "Pusher"]  # fmt: skip
IMAGE = "us-central1-docker.pkg.dev/my-project/minigpt/pipeline:latest"
EXECUTORS = {
    "TextExampleGen": "components.text_example_gen.executor.Executor",
    "VocabGen": "components.vocab_gen.executor.Executor",
    "DecoderCheck": "components.decoder_check.DecoderCheck_Executor",
    "Tokenize": "components.tokenize.executor.Executor",
    "StatisticsGen": "tfx.components.statistics_gen.executor.Executor",
    "SchemaGen": "tfx.components.schema_gen.executor.Executor",
    "ExampleValidator": "tfx.components.example_validator.executor.Executor",
    "DataCheck": "components.data_check.executor.Executor",
    "Trainer": "components.trainer.executor.Executor",
    "Evaluator": "components.evaluator.executor.Executor",
    "Pusher": "components.pusher.executor.Executor",
}
BEAM_STEPS = ("TextExampleGen", "VocabGen", "Tokenize", "StatisticsGen", "DataCheck")
KUBEFLOW_V2_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
# The parameter types KFP's driver lets a constant of each JSON kind fill.
DRIVER_PARAMETER_TYPES = {
    str: {"STRING"},
    int: {"NUMBER_INTEGER", "NUMBER_DOUBLE"},
    float: {"NUMBER_INTEGER", "NUMBER_DOUBLE"},
    bool: {"BOOLEAN"},
}


@pytest.fixture(scope="module")
def job():
    return golden("vertex")


@pytest.fixture(scope="module")
def kubeflow_package():
    return golden("kubeflow")


@pytest.mark.parametrize("orchestrator", sorted(GOLDEN_PATHS))
def test_the_compiled_spec_matches_the_golden_file(orchestrator, job, kubeflow_package):
    with open(GOLDEN_PATHS[orchestrator], encoding="utf-8") as f:
        expected = json.load(f)
    compiled = job if orchestrator == "vertex" else kubeflow_package
    assert compiled == expected, "the compiled spec changed: review it, then run `make golden`"


def test_the_platform_protos_accept_the_spec_and_it_runs_its_tasks_in_order(job):
    pipeline_job = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(
        job["pipelineSpec"]["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig()
    )
    assert pipeline_job.runtime_config.gcs_output_directory == "gs://my-bucket/minigpt/pipeline_root"
    assert pipeline_job.display_name == spec.pipeline_info.name == "minigpt-simplebooks92"
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(ORDER)
    for name, task in tasks.items():
        # Every task depends only on tasks before it in data-flow order, and is cached.
        assert all(ORDER.index(upstream) < ORDER.index(name) for upstream in task.dependent_tasks)
        assert task.caching_options.enable_cache
    assert set(tasks["Tokenize"].dependent_tasks) == {"TextExampleGen", "VocabGen", "DecoderCheck"}
    # The checks gate training. (The champion is no task's input: each step that uses it
    # looks MLflow's alias up when it runs.)
    assert set(tasks["Trainer"].dependent_tasks) == {"DataCheck", "Tokenize", "VocabGen"}
    assert set(tasks["Evaluator"].dependent_tasks) == {
        "Tokenize", "Trainer", "StatisticsGen", "ExampleValidator", "DataCheck"
    }  # fmt: skip
    assert set(tasks["Pusher"].dependent_tasks) == {"Evaluator", "Trainer"}
    for name, executor_class in EXECUTORS.items():
        executor_label = spec.components[tasks[name].component_ref.name].executor_label
        container = deployment.executors[executor_label].container
        args = list(container.args)
        assert container.image == IMAGE
        assert list(container.command) == ["python", "-m", KUBEFLOW_V2_ENTRYPOINT]
        assert args[args.index("--executor_class_path") + 1] == executor_class
        assert {env.name: env.value for env in container.env} == {
            "MLFLOW_TRACKING_URI": "https://mlflow.my-company.example",
            "MLFLOW_EXPERIMENT_NAME": "minigpt-simplebooks92",
            # bounded retries: a server that is down fails a task in about a minute, not many
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        }
        if name in BEAM_STEPS:
            # The image is the workers' code: nothing staged for them to pip install.
            assert "--runner=DataflowRunner" in args and not any(a.startswith("--setup_file") for a in args)
    trainer = deployment.executors["Trainer_executor"].container.resources
    assert (trainer.cpu_limit, trainer.memory_limit) == (8, 32)
    assert (trainer.accelerator.type, trainer.accelerator.count) == ("NVIDIA_L4", 1)
    assert not deployment.executors["Evaluator_executor"].container.resources.accelerator.type


def _container(spec: dict, task: str) -> dict:
    component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return spec["deploymentSpec"]["executors"][spec["components"][component]["executorLabel"]]["container"]


def _exec_properties(spec: dict, task: str) -> dict:
    """The task's constants as TFX's entrypoint in its container reads them, handed over as
    the platform's driver does: a 2.1 `constant` as a protobuf Value in `parameter_values`
    (read with the input spec the compiler put in the container's args), a 2.0
    `constantValue` as a pipeline Value in `parameters`."""
    inputs = pipeline_spec_pb2.ExecutorInput.Inputs()
    for name, parameter in spec["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {}).items():
        value = parameter["runtimeValue"]
        if "constant" in value:
            json_format.ParseDict(value["constant"], inputs.parameter_values[name])
        else:
            json_format.ParseDict(value["constantValue"], inputs.parameters[name])
    args = _container(spec, task)["args"]
    inputs_spec = None
    if "--json_serialized_inputs_spec_args" in args:
        text = args[args.index("--json_serialized_inputs_spec_args") + 1]
        inputs_spec = json_format.Parse(text, pipeline_spec_pb2.ComponentInputsSpec())
    properties = kubeflow_v2_entrypoint_utils.parse_execution_properties(
        inputs.parameter_values, inputs.parameters, inputs_spec
    )
    return {name: (type(value), value) for name, value in properties.items()}


def test_the_kubeflow_spec_holds_only_constants_kfps_driver_resolves(job, kubeflow_package):
    # KFP's driver resolves runtimeValue.constant (schema 2.1) and fails a task on 2.0's constantValue.
    spec = kubeflow_package["pipeline_spec"]
    assert spec["schemaVersion"] == "2.1.0"
    assert "constantValue" not in json.dumps(spec)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    # Each constant is of the type its component declares, as the driver checks...
    for task in EXECUTORS:
        component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
        declared = spec["components"][component]["inputDefinitions"].get("parameters", {})
        for name, parameter in spec["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {}).items():
            kinds = DRIVER_PARAMETER_TYPES[type(parameter["runtimeValue"]["constant"])]
            assert declared[name]["parameterType"] in kinds, (task, name)
    # ...and every executor reads the exec properties it reads on Vertex, of the same types.
    assert job["pipelineSpec"]["schemaVersion"] == "2.0.0"
    for task in EXECUTORS:
        assert _exec_properties(spec, task) == _exec_properties(job["pipelineSpec"], task), task
    assert {"custom_config", "run_fn"} <= set(_exec_properties(spec, "Trainer"))


def test_the_kubeflow_trainer_pod_asks_for_a_kubernetes_gpu_on_a_node_of_that_model(kubeflow_package):
    # KFP's driver puts the accelerator type into the pod's resource limits as it is.
    resources = _container(kubeflow_package["pipeline_spec"], "Trainer")["resources"]
    assert resources == {"accelerator": {"count": "1", "type": "nvidia.com/gpu"}, "cpuLimit": 8.0, "memoryLimit": 32.0}
    platform = json_format.ParseDict(kubeflow_package["platform_spec"], pipeline_spec_pb2.PlatformSpec())
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    assert set(executors) == {"Trainer_executor", "Evaluator_executor"}
    # kfp-kubernetes' KubernetesExecutorConfig; GKE labels a GPU node with its model.
    selector = {"nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}}
    # Both find the run's MLflow run by its id: the label KFP puts on the run's pods.
    run_id = {"fieldPathAsEnv": [{"name": "MINIGPT_PIPELINE_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"}]}
    assert json_format.MessageToDict(executors["Trainer_executor"]) == {**selector, **run_id}
    assert json_format.MessageToDict(executors["Evaluator_executor"]) == run_id


def test_an_executor_in_a_compiled_task_learns_its_pipeline_run_from_the_platform(job, kubeflow_package, monkeypatch):
    """TFX's container entrypoint gives executors no pipeline run: Vertex fills its job id
    into a flag, Kubeflow's pods carry it as an environment variable (the spec's label)."""
    for spec, kubeflow in ((job["pipelineSpec"], False), (kubeflow_package["pipeline_spec"], True)):
        args = _container(spec, "Evaluator")["args"]
        flags = [arg for arg in args if arg.startswith("--minigpt_")]
        monkeypatch.delenv("MINIGPT_PIPELINE_RUN_ID", raising=False)
        if kubeflow:
            assert flags == ["--minigpt_pipeline_name=minigpt-simplebooks92"]
            with pytest.raises(RuntimeError, match="gave no pipeline run id"):
                pipeline_run(BaseExecutor.Context(extra_flags=flags))
            monkeypatch.setenv("MINIGPT_PIPELINE_RUN_ID", "run-7")  # what the kubelet sets
            assert pipeline_run(BaseExecutor.Context(extra_flags=flags)) == ("minigpt-simplebooks92", "run-7")
        else:
            assert flags[1] == "--minigpt_pipeline_run_id={{$.pipeline_job_uuid}}"
            filled = [flags[0], flags[1].replace("{{$.pipeline_job_uuid}}", "job-5")]  # what Vertex does
            assert pipeline_run(BaseExecutor.Context(extra_flags=filled)) == ("minigpt-simplebooks92", "job-5")


def test_the_spec_names_no_path_of_this_machine(job):
    text = json.dumps(job)
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for local in (repo_root, os.path.expanduser("~"), "/tmp"):
        assert local not in text
    assert '"input_base"' not in text or "gs://my-bucket/simplebooks-92-raw" in text
    assert "run_fn" in text and "module_file" not in text


def test_the_embedded_corpus_is_read_from_the_image(tmp_path):
    path = tmp_path / "spec.json"
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=vertex", "--set", "data.corpus=embedded",
                     "--compile-only", str(path)])  # fmt: skip
    assert code == 0
    assert "/pipeline/pipeline/embedded_corpus" in path.read_text()


@pytest.mark.parametrize("cron", ["0 3 * * *", "*/15 * * * 1-5", "TZ=Europe/Paris 30 2 1,15 * *", "0 0 * 12 7"])
def test_good_schedules_pass(cron):
    check_cron(cron)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--orchestrator=vertex", "--schedule", "0 3 * *"], "--schedule: '0 3 \\* \\*' is not a five-field cron"),
        (["--orchestrator=vertex", "--schedule", "61 3 * * *"], "--schedule: .*field '61' is not a cron field in 0-59"),
        (["--orchestrator=vertex", "--schedule", "0 3 * * *", "--compile-only", "x.json"], "--schedule: .*cannot go"),
        (["--orchestrator=vertex", "--schedule", "0 3 * * *", "--set", "cloud.project=null"], "--project: is required"),
        (["--orchestrator=vertex", "--pipeline-root", "/tmp/root"], "--pipeline-root: must be a bucket URI"),
        (["--orchestrator=vertex", "--set", "cloud.image=null"], "--image: is required"),
        (["--orchestrator=kubeflow"], "--host: is required"),
        (["--orchestrator=vertex", "--host", "http://kfp"], "--host: is for Kubeflow Pipelines"),
        (["--orchestrator=vertex", "--namespace", "team-a"], "--namespace: is for Kubeflow Pipelines"),
        (["--orchestrator=kubeflow", "--compile-only", "x.json"], "--compile-only: Kubeflow Pipelines takes a .yaml"),
        (
            ["--orchestrator=kubeflow", "--host", "http://kfp", "--set", "cloud.trainer.accelerator_type=TPU_V3"],
            "cloud.trainer.accelerator_type: 'TPU_V3': a Kubeflow Trainer pod asks for NVIDIA GPUs only",
        ),
        (["--schedule", "0 3 * * *"], "--schedule: needs --orchestrator=vertex"),
        (["--orchestrator=vertex", "--set", "mlflow.tracking_uri=sqlite:///m.db"], "mlflow.tracking_uri: must be a"),
        (["--orchestrator=vertex", "--set", "data.corpus=/data/books"], "data.corpus: must be 'embedded' or a gs://"),
        (["--runner=DataflowRunner", "--set", "cloud.dataflow.temp_location=null"], "--temp_location: is required"),
    ],
)
def test_bad_combinations_fail_before_any_work_with_one_line(flags, message, capsys, tmp_path):
    code = run.main(["--config", VERTEX_CONFIG, "--set", f"output_dir={tmp_path}", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not os.listdir(tmp_path)  # nothing compiled, nothing written


class _Request(NamedTuple):
    method: str
    path: str
    query: dict
    body: Optional[dict]
    headers: dict


class _FakeKubeflowApi(http.server.BaseHTTPRequestHandler):
    """Kubeflow Pipelines' v2beta1 REST API, as much of it as kfp.Client uses to submit."""

    requests = []
    RESPONSES = {
        ("GET", "/apis/v2beta1/healthz"): {"multi_user": False},
        ("GET", "/apis/v2beta1/experiments"): {},
        ("POST", "/apis/v2beta1/experiments"): {"experiment_id": "exp-1", "display_name": "minigpt-simplebooks92"},
        ("POST", "/apis/v2beta1/runs"): {"run_id": "run-1", "display_name": "minigpt-simplebooks92"},
        ("POST", "/apis/v2beta1/recurringruns"): {"recurring_run_id": "rr-1", "display_name": "minigpt"},
    }

    def _answer(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        type(self).requests.append(
            _Request(
                method,
                path,
                urllib.parse.parse_qs(url.query),
                body,
                {name.lower(): value for name, value in self.headers.items()},
            )
        )
        payload = json.dumps(self.RESPONSES.get((method, path), {})).encode()
        self.send_response(200 if (method, path) in self.RESPONSES else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer("GET")

    def do_POST(self):  # noqa: N802
        self._answer("POST")

    def log_message(self, *args):
        pass


@pytest.fixture
def kubeflow_api():
    _FakeKubeflowApi.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubeflowApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeKubeflowApi.requests
    server.shutdown()


@pytest.mark.parametrize("schedule", [None, "0 3 * * 1"])
def test_kubeflow_submission_sends_the_compiled_spec_through_kfp_client(
    kubeflow_api, kubeflow_package, schedule, tmp_path, capsys, monkeypatch
):
    host, requests = kubeflow_api
    monkeypatch.chdir(tmp_path)  # the spec is written to ./outputs, as in the golden config
    flags = ["--schedule", schedule] if schedule else []
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=kubeflow", "--host", host,
                     "--runner=DataflowRunner", *flags])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    endpoint = "/apis/v2beta1/recurringruns" if schedule else "/apis/v2beta1/runs"
    (body,) = [r.body for r in requests if (r.method, r.path) == ("POST", endpoint)]
    # The package compiled for Kubeflow, with the Trainer's Kubernetes settings; the
    # pipeline root travels with the run.
    assert normalized(body["pipeline_spec"]) == kubeflow_package
    assert body["runtime_config"]["pipeline_root"] == "gs://my-bucket/minigpt/pipeline_root"
    assert body["experiment_id"] == "exp-1"
    if schedule:
        assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"  # KFP's cron has seconds first
        assert "Scheduled on Kubeflow Pipelines" in out and "rr-1" in out
    else:
        assert "Submitted on Kubeflow Pipelines" in out and "run-1" in out


@pytest.mark.parametrize("credential", ["KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH"])
def test_kubeflow_submission_reaches_a_profile_namespace_with_the_environments_token(
    kubeflow_api, credential, tmp_path, capsys, monkeypatch
):
    host, requests = kubeflow_api
    monkeypatch.chdir(tmp_path)
    token = "kfp-secret-token"
    if credential == "KFP_TOKEN":
        monkeypatch.setenv("KFP_TOKEN", token)
    else:  # a file kfp reads before each request, such as a projected service-account token
        (tmp_path / "token").write_text(token)
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "token"))
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=kubeflow", "--host", host,
                     "--namespace", "team-a", "--runner=DataflowRunner"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert requests and all(r.headers.get("authorization") == f"Bearer {token}" for r in requests)
    # The experiment, and so the run in it, is the profile's.
    (lookup,) = [r for r in requests if (r.method, r.path) == ("GET", "/apis/v2beta1/experiments")]
    assert lookup.query["namespace"] == ["team-a"]
    (experiment,) = [r.body for r in requests if (r.method, r.path) == ("POST", "/apis/v2beta1/experiments")]
    assert experiment["namespace"] == "team-a"
    # The secret is in no request body and no file written.
    assert token not in json.dumps([r.body for r in requests])
    written = [path for path in (tmp_path / "outputs").rglob("*") if path.is_file()]
    assert written and not any(token in path.read_text() for path in written)


def test_a_weekly_step_is_not_day_seven():
    assert not _names_day_seven("0 3 * * */7") and not _names_day_seven("0 17 * * 1")
    assert _names_day_seven("0 3 * * 1,7")


@pytest.mark.parametrize(
    "schedule, problem",
    [
        ("TZ=Europe/Paris 30 2 * * 1", "Kubeflow Pipelines takes no time zone"),
        ("30 2 * * 7", "takes days of the week 0-6: write Sunday as 0"),  # which check_cron allows
        ("30 2 * * 5-7", "takes days of the week 0-6"),
    ],
)
def test_a_kubeflow_schedule_kfp_would_refuse_is_refused_before_any_request(
    kubeflow_api, tmp_path, capsys, schedule, problem
):
    host, requests = kubeflow_api
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=kubeflow", "--host", host,
                     "--schedule", schedule, "--set", f"output_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: config error: --schedule: {schedule!r}: ") and problem in err, err
    assert requests == [] and not os.listdir(tmp_path)


def test_an_unreachable_kubeflow_api_is_one_line_and_the_spec_is_kept(tmp_path, capsys):
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=kubeflow", "--host", "http://127.0.0.1:9",
                     "--set", f"output_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "Kubeflow Pipelines at http://127.0.0.1:9 did not accept the pipeline" in err
    assert os.path.exists(tmp_path / "minigpt-simplebooks92_kubeflow.yaml")


@pytest.mark.parametrize("schedule", [None, "0 3 * * 1", "TZ=Europe/Paris 30 2 * * 1"])
def test_vertex_submission_builds_the_pipeline_job_the_sdk_would_send(job, schedule, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "my-project"))
    sent = {}

    def submit(self, **kwargs):  # the network call
        sent.update(job=self, **kwargs)

    def create_schedule(self, cron, display_name, **kwargs):  # the network call
        sent.update(job=self, cron=cron, display_name=display_name, **kwargs)
        return type("Schedule", (), {"resource_name": "projects/my-project/schedules/1"})()

    monkeypatch.setattr(aiplatform.PipelineJob, "submit", submit)
    monkeypatch.setattr(aiplatform.PipelineJob, "create_schedule", create_schedule)
    monkeypatch.setattr(aiplatform.PipelineJob, "resource_name", "projects/my-project/pipelineJobs/1")
    monkeypatch.chdir(tmp_path)
    flags = ["--schedule", schedule] if schedule else []
    code = run.main(["--config", VERTEX_CONFIG, "--orchestrator=vertex", "--runner=DataflowRunner", *flags])
    assert code == 0, capsys.readouterr().err
    # The request body as the SDK would serialise it.
    request = json.loads(type(sent["job"]._gca_resource).to_json(sent["job"]._gca_resource))
    assert normalized(request["pipelineSpec"]) == job["pipelineSpec"]
    assert request["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/minigpt/pipeline_root"
    assert sent["job"].project == "my-project" and sent["job"].location == "us-central1"
    # Its runs run as the pipeline's service account, not the Compute Engine default one.
    assert sent["service_account"] == "minigpt-pipelines@my-project.iam.gserviceaccount.com"
    if schedule:
        assert sent["cron"] == schedule  # Vertex reads a TZ= prefix itself (UTC without one)


def _pre_cache_check(job: dict, corpus: str, out) -> dict:
    """Runs TextExampleGen's compiled `preCacheCheck` command as Vertex's launcher does:
    the task's constants as the executor input's parameters (schema 2.0), the corpus at
    `corpus` instead of the bucket, and an output file; returns what it wrote there."""
    spec = job["pipelineSpec"]
    hook = spec["deploymentSpec"]["executors"]["TextExampleGen_executor"]["container"]["lifecycle"]["preCacheCheck"]
    parameters = {
        name: value["runtimeValue"]["constantValue"]
        for name, value in spec["root"]["dag"]["tasks"]["TextExampleGen"]["inputs"]["parameters"].items()
    }
    parameters["input_base"] = {"stringValue": corpus}
    artifact_type = spec["components"]["TextExampleGen"]["outputDefinitions"]["artifacts"]["examples"]["artifactType"]
    executor_input = {
        "inputs": {"parameters": parameters},
        "outputs": {
            "artifacts": {
                "examples": {"artifacts": [{"name": "examples", "type": artifact_type, "uri": str(out / "examples")}]}
            },
            "outputFile": str(out / "executor_output.json"),
        },
    }
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in hook["args"]]
    assert hook["command"][0] == "python"
    done = subprocess.run([sys.executable, *hook["command"][1:], *args], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "executor_output.json", encoding="utf-8") as f:
        return json.load(f)["parameterValues"]


def test_the_compiled_text_example_gen_fingerprints_its_files_before_the_cache(job, tiny_corpus, tmp_path):
    """TFX adds the file-fingerprinting preCacheCheck only to FileBasedExampleGen's
    subclasses; without it, a scheduled run whose corpus changed at the same gs:// path
    was served from the cache. The compiled command runs, and its fingerprint (part of
    the cache key) follows the files: same files, same fingerprint; a changed one, another."""
    first = _pre_cache_check(job, str(tiny_corpus), tmp_path / "1")
    assert first["span"] == 0 and all(f"split:{s}," in first["input_fingerprint"] for s in ("train", "eval", "test"))
    assert _pre_cache_check(job, str(tiny_corpus), tmp_path / "2")["input_fingerprint"] == first["input_fingerprint"]
    with open(tiny_corpus / "test.txt", "a", encoding="utf-8") as f:
        f.write("one more held-out paragraph\n")
    assert _pre_cache_check(job, str(tiny_corpus), tmp_path / "3")["input_fingerprint"] != first["input_fingerprint"]
