"""Credentials for an authenticated MLflow server reach the tasks, and no secret reaches a spec.

Compiled specs are checked for what they name (a Kubernetes Secret, a Secret Manager
secret version, an ID token audience) and for what they must never hold: the credentials
in the compiling machine's environment. Then a task's processes are run with the
environment the compiled spec gives them, against local stand-ins at the network
boundary only: Google's token endpoint (a real JWT-bearer exchange, signed with a
throwaway service account key), Secret Manager's REST API and an MLflow server that
answers only requests carrying the expected `Authorization` header.
"""

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Dict, List

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.runtime.errors import ConfigError
from components.tracking.credentials import GOOGLE_ID_TOKEN_AUTH, SECRET_MANAGER_AUTH
from pipeline.beam_args import dataflow_args
from pipeline.config import load_config
from pipeline.kubeflow import check_orchestrator, compile_pipeline, write_pipeline
from tests.conftest import REPO_ROOT
from tests.golden.spec import VERTEX_CONFIG

SECRET = "projects/my-project/secrets/mlflow-credentials/versions/latest"
AUDIENCE = "https://mlflow-abc123-uc.a.run.app"
SERVICE_ACCOUNT = "minigpt-pipelines@my-project.iam.gserviceaccount.com"
# What the compiling machine's environment holds: none of it may reach a spec.
COMPILER_CREDENTIALS = {
    "MLFLOW_TRACKING_USERNAME": "compiler-user-5f3a",
    "MLFLOW_TRACKING_PASSWORD": "compiler-password-9c1e",
    "MLFLOW_TRACKING_TOKEN": "compiler-token-77b0",
}
# What the Secret Manager secret holds.
TASK_CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "task-user-0d4e", "MLFLOW_TRACKING_PASSWORD": "task-password-a81f"}
TASK_BASIC = "Basic " + base64.b64encode(b"task-user-0d4e:task-password-a81f").decode()
EXPERIMENTS_SEARCH = "/api/2.0/mlflow/experiments/search"
# What a service account's signed assertion is addressed to, whatever token_uri it posts to.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _compile(tmp_path, orchestrator: str, *overrides: str):
    """The documents compiled from configs/vertex.yaml with `overrides`, and the written file's text."""
    cfg = load_config(VERTEX_CONFIG, list(overrides))
    documents = compile_pipeline(cfg, dataflow_args(cfg), orchestrator)
    path = write_pipeline(documents, str(tmp_path / ("spec.yaml" if orchestrator == "kubeflow" else "spec.json")))
    with open(path, encoding="utf-8") as f:
        return documents, f.read()


def _containers(spec: dict) -> Dict[str, dict]:
    """The container of each executor that runs one (a resolver runs none)."""
    executors = spec["deploymentSpec"]["executors"].items()
    return {label: executor["container"] for label, executor in executors if "container" in executor}


def _container_env(spec: dict, executor: str = "Trainer_executor") -> Dict[str, str]:
    return {item["name"]: item["value"] for item in _containers(spec)[executor]["env"]}


@pytest.fixture
def compiler_credentials(monkeypatch):
    for name, value in COMPILER_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def _assert_no_secret_in(text: str) -> None:
    for value in (*COMPILER_CREDENTIALS.values(), *TASK_CREDENTIALS.values()):
        assert value not in text


def test_kubeflow_tasks_get_the_kubernetes_secrets_keys_and_the_spec_only_its_name(tmp_path, compiler_credentials):
    overrides = ("mlflow.kubernetes_secret=mlflow-credentials", "mlflow.kubernetes_secret_keys=[MLFLOW_TRACKING_TOKEN]")
    (spec, platform), text = _compile(tmp_path, "kubeflow", *overrides)
    _assert_no_secret_in(text)
    # Every task's container, and no other executor, reads the Secret's token as MLflow's variable.
    executors = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec()).platforms["kubernetes"]
    executors = {
        name: json_format.MessageToDict(config) for name, config in executors.deployment_spec.executors.items()
    }
    assert set(executors) == set(_containers(spec)) and "Evaluator_executor" in executors
    token = {"secretKey": "MLFLOW_TRACKING_TOKEN", "envVar": "MLFLOW_TRACKING_TOKEN"}
    secret = [{"secretName": "mlflow-credentials", "keyToEnv": [token]}]
    assert all(config["secretAsEnv"] == secret for config in executors.values())
    # The GPU Trainer keeps its node selector beside it.
    assert executors["Trainer_executor"]["nodeSelector"] == {
        "labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    }
    assert "MLFLOW_TRACKING_AUTH" not in _container_env(spec)  # MLflow reads the Secret's variables itself


@pytest.mark.parametrize(
    "override, auth, setting",
    [
        (f"mlflow.secret_manager_secret={SECRET}", SECRET_MANAGER_AUTH, ("MINIGPT_MLFLOW_CREDENTIALS_SECRET", SECRET)),
        (f"mlflow.id_token_audience={AUDIENCE}", GOOGLE_ID_TOKEN_AUTH, ("MINIGPT_MLFLOW_ID_TOKEN_AUDIENCE", AUDIENCE)),
    ],
)
@pytest.mark.parametrize("orchestrator", ["vertex", "kubeflow"])
def test_the_spec_selects_our_auth_provider_by_name_and_holds_no_secret(
    orchestrator, override, auth, setting, tmp_path, compiler_credentials
):
    documents, text = _compile(tmp_path, orchestrator, override)
    _assert_no_secret_in(text)
    spec = documents[0]["pipelineSpec"] if orchestrator == "vertex" else documents[0]
    for container in _containers(spec).values():
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["MLFLOW_TRACKING_AUTH"] == auth and env[setting[0]] == setting[1]
        assert not set(env) & set(COMPILER_CREDENTIALS)
    # Kubeflow's platform spec is the GPU node selector and the run id only: no Secret to read.
    if orchestrator == "kubeflow":
        executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert not any("secretAsEnv" in config for config in executors.values())


def test_a_vertex_training_job_gets_the_same_names(tmp_path, compiler_credentials):
    (job,), text = _compile(
        tmp_path, "vertex", f"mlflow.secret_manager_secret={SECRET}", "cloud.trainer.vertex_training=true"
    )
    _assert_no_secret_in(text)
    # The custom job's machines run the Trainer's processes: their containers get the names too.
    parameters = job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    custom_config = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    (pool,) = custom_config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    env = {item["name"]: item["value"] for item in pool["container_spec"]["env"]}
    assert env == {"MLFLOW_TRACKING_AUTH": SECRET_MANAGER_AUTH, "MINIGPT_MLFLOW_CREDENTIALS_SECRET": SECRET}


@pytest.mark.parametrize(
    "overrides, key",
    [
        (
            (f"mlflow.secret_manager_secret={SECRET}", f"mlflow.id_token_audience={AUDIENCE}"),
            "mlflow.id_token_audience",
        ),
        (("mlflow.kubernetes_secret=MLflow_Credentials",), "mlflow.kubernetes_secret"),
        (("mlflow.kubernetes_secret_keys=[MLFLOW_TRACKING_USERNAME]",), "mlflow.kubernetes_secret_keys"),
        (
            ("mlflow.kubernetes_secret_keys=[MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_PASSWORD]",),
            "mlflow.kubernetes_secret_keys",
        ),  # fmt: skip
        (("mlflow.secret_manager_secret=mlflow-credentials",), "mlflow.secret_manager_secret"),
        (("mlflow.id_token_audience=' '",), "mlflow.id_token_audience"),
    ],
)
def test_bad_credential_settings_are_one_config_error_line(overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(VERTEX_CONFIG, list(overrides))
    assert error.value.key == key and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "orchestrator, overrides",
    [
        ("vertex", ()),
        ("kubeflow", ("cloud.trainer.vertex_training=true", "cloud.trainer.vertex_machine_type=g2-standard-8")),
    ],  # fmt: skip
)
def test_a_kubernetes_secret_is_refused_where_no_pod_can_read_it(orchestrator, overrides):
    cfg = load_config(VERTEX_CONFIG, ["mlflow.kubernetes_secret=mlflow-credentials", *overrides])
    with pytest.raises(ConfigError, match="secret_manager_secret or mlflow.id_token_audience") as error:
        check_orchestrator(cfg, orchestrator, "https://kfp.example.com", None, None)
    assert error.value.key == "mlflow.kubernetes_secret"


class _Google(http.server.ThreadingHTTPServer):
    """Stand-ins for Google's token endpoint, Secret Manager's REST API and an MLflow server."""

    def __init__(self, public_key: bytes, signer: crypt.RSASigner):
        super().__init__(("127.0.0.1", 0), _GoogleHandler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.public_key, self.signer = public_key, signer
        self.access_token = "ya29.access-for-secret-manager"
        self.secret_status = 200
        self.mlflow_accepts = lambda authorization: False  # the MLflow stand-in's check
        self.mlflow_requests: List[str] = []  # the Authorization header of each


class _GoogleHandler(http.server.BaseHTTPRequestHandler):
    server: _Google

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/token":  # a JWT-bearer grant, checked against the key file's public key
            form = urllib.parse.parse_qs(body.decode())
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = jwt.decode(form["assertion"][0], certs=self.server.public_key, audience=GOOGLE_TOKEN_AUDIENCE)
            if "target_audience" in claims:  # an ID token for that audience, signed by "Google"
                now = int(time.time())
                token = {"aud": claims["target_audience"], "iat": now, "exp": now + 3600, "sub": claims["iss"]}
                return self._reply(200, {"id_token": jwt.encode(self.server.signer, token).decode()})
            return self._reply(200, {"access_token": self.server.access_token, "expires_in": 3600})
        if self.path == EXPERIMENTS_SEARCH:
            authorization = self.headers.get("Authorization", "")
            self.server.mlflow_requests.append(authorization)
            if not self.server.mlflow_accepts(authorization):
                return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "credentials required"})
            return self._reply(200, {"experiments": []})
        return self._reply(404, {})

    def do_GET(self):  # noqa: N802
        if self.path == f"/v1/{SECRET}:access":
            if self.headers.get("Authorization") != f"Bearer {self.server.access_token}":
                return self._reply(401, {})
            if self.server.secret_status != 200:
                return self._reply(self.server.secret_status, {"error": {"status": "PERMISSION_DENIED"}})
            payload = base64.b64encode(json.dumps(TASK_CREDENTIALS).encode()).decode()
            return self._reply(200, {"name": SECRET, "payload": {"data": payload}})
        return self._reply(404, {})

    def log_message(self, *args):
        pass


@pytest.fixture
def google(tmp_path):
    """The stand-ins, and a throwaway service account key file whose token_uri is theirs."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    server = _Google(public, crypt.RSASigner.from_string(pem.decode(), "key-1"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "my-project",
                "private_key_id": "key-1",
                "private_key": pem.decode(),
                "client_email": SERVICE_ACCOUNT,
                "client_id": "1",
                "token_uri": server.url + "/token",
            }
        )
    )
    yield server, str(key_file)
    server.shutdown()
    server.server_close()


# A task's process: MLflow's client, built as the components build it, with the
# environment of the compiled spec. Only Secret Manager's host is pointed at the stand-in.
TASK = """
import sys
from mlflow.tracking import MlflowClient
from components.runtime.errors import ConfigError
from components.tracking import secret_manager
secret_manager.API_ROOT = sys.argv[1]
try:
    MlflowClient().search_experiments(max_results=1)
except ConfigError as e:
    sys.exit(str(e))
"""


def _run_task(tmp_path, google, *overrides: str) -> subprocess.CompletedProcess:
    server, key_file = google
    documents, _ = _compile(tmp_path, "vertex", f"mlflow.tracking_uri={server.url}", *overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(_container_env(documents[0]["pipelineSpec"]), GOOGLE_APPLICATION_CREDENTIALS=key_file)
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    return subprocess.run(
        [sys.executable, "-c", TASK, server.url], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_secret_manager_secret_reaches_mlflows_requests(tmp_path, google):
    server, _ = google
    server.mlflow_accepts = TASK_BASIC.__eq__
    result = _run_task(tmp_path, google, f"mlflow.secret_manager_secret={SECRET}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.mlflow_requests == [TASK_BASIC]


def test_a_google_id_token_for_the_audience_reaches_mlflows_requests(tmp_path, google):
    server, _ = google
    server.mlflow_accepts = lambda authorization: _id_token_subject(authorization, server) == SERVICE_ACCOUNT
    result = _run_task(tmp_path, google, f"mlflow.id_token_audience={AUDIENCE}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(server.mlflow_requests) == 1


def _id_token_subject(authorization: str, server: "_Google") -> str:
    """Whom a `Bearer <ID token>` header's token, issued for AUDIENCE by the stand-in, names."""
    scheme, _, token = authorization.partition(" ")
    return jwt.decode(token, certs=server.public_key, audience=AUDIENCE)["sub"] if scheme == "Bearer" else ""


def test_without_credentials_the_server_refuses(tmp_path, google):
    server, _ = google
    server.mlflow_accepts = TASK_BASIC.__eq__
    result = _run_task(tmp_path, google)
    assert result.returncode != 0 and server.mlflow_requests == [""]


def test_a_denied_secret_is_one_line_naming_the_role_to_grant(tmp_path, google):
    server, _ = google
    server.secret_status = 403
    result = _run_task(tmp_path, google, f"mlflow.secret_manager_secret={SECRET}")
    assert result.returncode == 1 and not server.mlflow_requests
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("config error: mlflow.secret_manager_secret: ")
    assert "roles/secretmanager.secretAccessor" in line and SECRET in line
