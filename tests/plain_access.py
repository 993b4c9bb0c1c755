"""How a plain client reaches the emulator's workspace: a bearer token from the emulator's Azure
AD (client credentials), and MLflow's own REST store with it (no bridge involved).

The one copy for tests, test scripts (``tests/spark_jobs``) and benchmarks.
"""

from __future__ import annotations

from typing import Any

import requests

ARM_SCOPE = "https://management.azure.com/.default"


def emulator_token(info: dict[str, Any], scope: str = ARM_SCOPE) -> str:
    """An access token (default: for the workspace), as a service principal gets one."""
    response = requests.post(
        f"{info['authority']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "scope": scope,
        },
        verify=info["ca_bundle"],
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def plain_store(info: dict[str, Any]) -> Any:
    """MLflow's own REST store on the workspace URL with a bearer token: no bridge involved."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    creds = MlflowHostCreds(
        host=info["workspace_url"], token=emulator_token(info), server_cert_path=info["ca_bundle"]
    )
    return RestStore(lambda: creds)
