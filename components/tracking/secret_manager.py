"""Reads a Secret Manager secret version through its REST API, as this process's Google identity.

The pinned set has google-auth but not google-cloud-secret-manager, and one GET is all a
task needs: `AuthorizedSession` adds the access token of Application Default Credentials
(a Vertex task's service account, a Kubeflow pod's Workload Identity, or a key file).
"""

from __future__ import annotations

import base64

from components.runtime.errors import ConfigError, first_line
from components.tracking.credentials import SECRET_VERSION

# The global endpoint; a regional secret is served by its location's (see `access_url`).
API_ROOT = "https://secretmanager.googleapis.com"
REGIONAL_API_ROOT = "https://secretmanager.{location}.rep.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"
TIMEOUT_S = 30


def access_url(secret_version: str) -> str:
    """The `:access` URL of `secret_version` (projects/P/[locations/L/]secrets/S/versions/V)."""
    match = SECRET_VERSION.fullmatch(secret_version)
    if not match:
        raise ConfigError("mlflow.secret_manager_secret", f"{secret_version!r} is not a secret version's name")
    location = match.group("location")
    root = REGIONAL_API_ROOT.format(location=location) if location else API_ROOT
    return f"{root}/v1/{secret_version}:access"


def access_secret_version(secret_version: str) -> bytes:
    """The payload of `secret_version`.

    Raises:
      ConfigError: no Google credentials here, or Secret Manager refused or could not be
        reached; one line naming the secret and the role to grant (never the payload).
    """
    import google.auth
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import AuthorizedSession
    from requests import RequestException

    key = "mlflow.secret_manager_secret"
    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
        response = AuthorizedSession(credentials).get(access_url(secret_version), timeout=TIMEOUT_S)
    except (GoogleAuthError, RequestException) as e:
        raise ConfigError(key, f"cannot read {secret_version}: {first_line(e, 200)}") from None
    if response.status_code in (401, 403):
        raise ConfigError(
            key,
            f"{secret_version}: access denied (HTTP {response.status_code}); grant {ACCESSOR_ROLE} on the secret "
            "to the service account the task runs as",
        )
    if response.status_code == 404:
        raise ConfigError(key, f"{secret_version} does not exist (HTTP 404): create it or fix the name")
    if not response.ok:
        raise ConfigError(key, f"Secret Manager answered HTTP {response.status_code} for {secret_version}")
    return base64.b64decode(response.json()["payload"]["data"])
