"""MLflow request auth providers for a tracking server that wants credentials from a task.

MLflow loads every `mlflow.request_auth_provider` entry point (setup.py declares these) and,
for each request to the tracking server and its artifact proxy, asks the one named by
`MLFLOW_TRACKING_AUTH` for a `requests` auth. So every MLflow client of a task's processes
authenticates, whoever built it, and the credentials live only in this process's memory:
never in the compiled spec, nor in an environment that child processes or crash reports see.
components/tracking/credentials.py says how a spec selects them.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict

import requests
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

from components.runtime.errors import ConfigError, first_line
from components.tracking.credentials import (
    CREDENTIALS_SECRET_ENV,
    GOOGLE_ID_TOKEN_AUTH,
    ID_TOKEN_AUDIENCE_ENV,
    PASSWORD,
    SECRET_MANAGER_AUTH,
    TOKEN,
    TRACKING_AUTH_ENV,
    USERNAME,
    parse_credentials,
)
from components.tracking.secret_manager import access_secret_version


def _setting(variable: str, key: str, provider: str) -> str:
    """The value of `variable`, which the compiled spec sets beside MLFLOW_TRACKING_AUTH."""
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(key, f"{TRACKING_AUTH_ENV}={provider} needs ${variable}: compile the pipeline with {key} set")
    return value


class _BearerToken(requests.auth.AuthBase):
    """`Authorization: Bearer <token>` on each request."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class SecretManagerAuthProvider(RequestAuthProvider):
    """MLflow's basic auth or bearer token from a Secret Manager secret version (a JSON
    object of MLflow's credential variables), read once per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: Dict[str, Dict[str, str]] = {}

    def get_name(self) -> str:
        return SECRET_MANAGER_AUTH

    def get_auth(self) -> requests.auth.AuthBase:
        secret = _setting(CREDENTIALS_SECRET_ENV, "mlflow.secret_manager_secret", SECRET_MANAGER_AUTH)
        with self._lock:
            if secret not in self._credentials:
                self._credentials[secret] = parse_credentials(access_secret_version(secret), secret)
            credentials = self._credentials[secret]
        if TOKEN in credentials:
            return _BearerToken(credentials[TOKEN])
        return requests.auth.HTTPBasicAuth(credentials[USERNAME], credentials[PASSWORD])


class GoogleIdTokenAuthProvider(RequestAuthProvider):
    """A Google ID token for an MLflow server behind IAP (audience: the OAuth client ID) or
    Cloud Run IAM (audience: the service URL), minted from this process's service account
    (the metadata server's on Vertex AI and GKE Workload Identity, else
    $GOOGLE_APPLICATION_CREDENTIALS' key file) and minted again once it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: Dict[str, Any] = {}

    def get_name(self) -> str:
        return GOOGLE_ID_TOKEN_AUTH

    def get_auth(self) -> requests.auth.AuthBase:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request
        from google.oauth2 import id_token

        audience = _setting(ID_TOKEN_AUDIENCE_ENV, "mlflow.id_token_audience", GOOGLE_ID_TOKEN_AUTH)
        # Minted here rather than in the request's auth hook, where MLflow would wrap an
        # error in its own message; google-auth counts a token about to expire as invalid.
        with self._lock:
            try:
                if audience not in self._credentials:
                    self._credentials[audience] = id_token.fetch_id_token_credentials(audience, request=Request())
                credentials = self._credentials[audience]
                if not credentials.valid:
                    credentials.refresh(Request())
            except GoogleAuthError as e:
                raise ConfigError(
                    "mlflow.id_token_audience", f"cannot mint a Google ID token for {audience}: {first_line(e, 200)}"
                ) from None
            return _BearerToken(credentials.token)
