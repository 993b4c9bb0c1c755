"""Durable-writes tests: a separate plain MLflow reader (bearer token, no bridge)."""

from __future__ import annotations

from typing import Any

import requests

ARM_SCOPE = "https://management.azure.com/.default"


def fetch_token(info: dict[str, Any]) -> str:
    response = requests.post(
        f"{info['authority']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "scope": ARM_SCOPE,
        },
        verify=info["ca_bundle"],
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def plain_reader(info: dict[str, Any]) -> Any:
    """MLflow's own REST store on the workspace URL with a bearer token: no bridge involved."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    creds = MlflowHostCreds(
        host=info["workspace_url"], token=fetch_token(info), server_cert_path=info["ca_bundle"]
    )
    return RestStore(lambda: creds)


def history(reader: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of every point, in the workspace's order."""
    return [(m.step, m.timestamp, m.value) for m in reader.get_metric_history(run_id, key)]
