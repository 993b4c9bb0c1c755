"""One cheap authenticated call that tells whether the workspace answers MLflow REST."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from spark_aml_bridge.azureml.auth import bearer_auth
from spark_aml_bridge.errors import WorkspaceUnreachableError

if TYPE_CHECKING:
    from spark_aml_bridge.workspace import WorkspaceAddress

PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"


def probe_workspace(address: WorkspaceAddress, ca_bundle: str | None, timeout: float = 15) -> str:
    """Raise one clear error unless the workspace answers; 401/403 raise CredentialError."""
    url = address.rest_base + PROBE_ENDPOINT
    try:
        response = requests.post(
            url,
            json={"max_results": 1},
            auth=bearer_auth(),
            verify=ca_bundle or True,
            timeout=timeout,
        )
    except requests.exceptions.SSLError as exc:
        raise WorkspaceUnreachableError(
            f"TLS to {address.host} failed: {_short(exc)}",
            "for a private CA (such as the emulator's) set SPARK_AML_BRIDGE_CA_BUNDLE to its PEM",
        ) from None
    except requests.exceptions.RequestException as exc:
        raise WorkspaceUnreachableError(
            f"the workspace at {address.host} does not answer: {_short(exc)}",
            "check the workspace address and the network path to it (a private-link workspace "
            "needs a route from this network); for the emulator, start `spark-aml-bridge emulator`",
        ) from None
    if response.status_code == 404:
        raise WorkspaceUnreachableError(
            f"{address.host} has no MLflow endpoint for workspace '{address.workspace_name}' "
            f"(HTTP 404)",
            "check the subscription, resource group and workspace name "
            "(`az ml workspace show --query mlflow_tracking_uri`)",
        )
    if response.status_code in (429, 503):
        # A throttling or outage storm in progress: say so, with the server's own wait.
        wait = response.headers.get("Retry-After")
        raise WorkspaceUnreachableError(
            f"the workspace at {address.host} is "
            f"{'throttling requests' if response.status_code == 429 else 'temporarily unavailable'}"
            f" (HTTP {response.status_code}{f', Retry-After {wait} s' if wait else ''})",
            "a 429/503 storm is in progress: wait and run again; tracking calls retry with "
            "backoff meanwhile (dual mode spools them); if it is your own load, write from fewer "
            "executors at once or log in batches (mlflow.log_metrics, log_batch)",
        )
    if response.status_code >= 400:
        raise WorkspaceUnreachableError(
            f"the workspace at {address.host} answered HTTP {response.status_code}: "
            f"{response.text[:200]}",
            "retry later; if it persists, check the workspace's health in the Azure portal",
        )
    return f"{address.host} answers MLflow REST"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"
