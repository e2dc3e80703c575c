"""Where a Kubeflow/Vertex task's MLflow credentials come from, named without their values.

A compiled spec is stored by the platform, shown in its UI and kept in version control, so
it may name where a secret is but never hold it. Three ways, one per run (`mlflow.*` in
pipeline/config.py):

- a Kubernetes Secret (Kubeflow Pipelines): the platform spec maps its keys, named after
  MLflow's own variables, to every task's environment, where MLflow's client reads them;
- a Secret Manager secret version: `MLFLOW_TRACKING_AUTH` selects our MLflow auth provider
  (components/tracking/request_auth.py), which reads the secret in the task, as the task's
  service account, at its first request to MLflow;
- a Google ID token: the same, minting a token for an MLflow server behind IAP or Cloud
  Run IAM from the task's service account.

This module imports neither MLflow nor google-auth: the config loader checks settings with it.
"""

from __future__ import annotations

import json
import re
from typing import Dict, Mapping, Optional, Sequence

from components.runtime.errors import ConfigError

# MLflow's own credential variables (mlflow/environment_variables.py), which its client
# reads for every request: HTTP basic auth, or a bearer token.
USERNAME = "MLFLOW_TRACKING_USERNAME"
PASSWORD = "MLFLOW_TRACKING_PASSWORD"
TOKEN = "MLFLOW_TRACKING_TOKEN"
CREDENTIAL_KEY_SETS = ({USERNAME, PASSWORD}, {TOKEN})
# MLflow's variable naming the auth provider (entry point group mlflow.request_auth_provider)
# that authenticates each request; ours are declared in setup.py.
TRACKING_AUTH_ENV = "MLFLOW_TRACKING_AUTH"
SECRET_MANAGER_AUTH = "minigpt-secret-manager"
GOOGLE_ID_TOKEN_AUTH = "minigpt-google-id-token"
# What those providers read: the secret version's name, the ID token's audience.
CREDENTIALS_SECRET_ENV = "MINIGPT_MLFLOW_CREDENTIALS_SECRET"
ID_TOKEN_AUDIENCE_ENV = "MINIGPT_MLFLOW_ID_TOKEN_AUDIENCE"
# projects/P/secrets/S/versions/V, or a regional secret's projects/P/locations/L/secrets/S/versions/V.
SECRET_VERSION = re.compile(r"projects/[^/\s]+(?:/locations/(?P<location>[^/\s]+))?/secrets/[^/\s]+/versions/[^/\s]+")
# A Kubernetes object name (DNS-1123 subdomain).
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def check_credential_keys(key: str, names: Sequence[str]) -> None:
    """`names` are MLflow's basic-auth pair or its token variable; else a ConfigError on `key`."""
    if set(names) not in CREDENTIAL_KEY_SETS or len(names) != len(set(names)):
        raise ConfigError(
            key, f"must be [{USERNAME}, {PASSWORD}] (MLflow's basic auth) or [{TOKEN}], got {list(names)}"
        )


def check_settings(
    kubernetes_secret: Optional[str],
    kubernetes_secret_keys: Sequence[str],
    secret_manager_secret: Optional[str],
    id_token_audience: Optional[str],
) -> None:
    """The `mlflow.*` credential settings: at most one way, each well formed; one ConfigError."""
    chosen = [
        name
        for name, value in (
            ("kubernetes_secret", kubernetes_secret),
            ("secret_manager_secret", secret_manager_secret),
            ("id_token_audience", id_token_audience),
        )
        if value is not None
    ]
    if len(chosen) > 1:
        raise ConfigError(
            f"mlflow.{chosen[1]}", f"cannot go with mlflow.{chosen[0]}: choose one way for the tasks to authenticate"
        )
    if kubernetes_secret is not None and not _KUBERNETES_NAME.fullmatch(kubernetes_secret):
        raise ConfigError(
            "mlflow.kubernetes_secret",
            f"must be a Kubernetes Secret's name (lowercase letters, digits, '-' and '.'), got {kubernetes_secret!r}",
        )
    check_credential_keys("mlflow.kubernetes_secret_keys", kubernetes_secret_keys)
    if secret_manager_secret is not None and not SECRET_VERSION.fullmatch(secret_manager_secret):
        raise ConfigError(
            "mlflow.secret_manager_secret",
            "must name a secret version, projects/PROJECT/secrets/NAME/versions/VERSION (VERSION may be latest), "
            f"got {secret_manager_secret!r}",
        )
    if id_token_audience is not None and not id_token_audience.strip():
        raise ConfigError(
            "mlflow.id_token_audience", "must be the IAP OAuth client ID or the Cloud Run service URL, or null"
        )


def auth_variables(secret_manager_secret: Optional[str], id_token_audience: Optional[str]) -> Dict[str, str]:
    """The task environment that selects and configures our MLflow auth provider ({} for none).

    Names only: the secret's resource name and the token's audience are no secrets.
    """
    if secret_manager_secret:
        return {TRACKING_AUTH_ENV: SECRET_MANAGER_AUTH, CREDENTIALS_SECRET_ENV: secret_manager_secret}
    if id_token_audience:
        return {TRACKING_AUTH_ENV: GOOGLE_ID_TOKEN_AUTH, ID_TOKEN_AUDIENCE_ENV: id_token_audience}
    return {}


def parse_credentials(payload: bytes, secret: str) -> Dict[str, str]:
    """A secret's payload, a JSON object of MLflow's credential variables, as a dict.

    Raises:
      ConfigError: the payload is not such an object (the message never quotes it).
    """
    key = "mlflow.secret_manager_secret"
    try:
        credentials = json.loads(payload.decode("utf-8"))
    except ValueError:
        credentials = None
    if not isinstance(credentials, Mapping) or not all(isinstance(v, str) and v for v in credentials.values()):
        raise ConfigError(
            key,
            f"{secret} must hold a JSON object of strings, "
            f'{{"{USERNAME}": ..., "{PASSWORD}": ...}} or {{"{TOKEN}": ...}}',
        )
    check_credential_keys(f"{key} ({secret})", sorted(credentials))
    return dict(credentials)
