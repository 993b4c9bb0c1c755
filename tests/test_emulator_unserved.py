"""Routes Azure ML's MLflow endpoint does not serve answer as Azure ML does: 404, empty body."""

from __future__ import annotations

import pytest
import requests
from plain_access import emulator_token

ROUTES = [
    ("POST", "/api/2.0/mlflow/logged-models/search"),
    ("POST", "/api/2.0/mlflow/traces"),
    ("GET", "/api/2.0/mlflow/traces/tr-1/info"),
    ("POST", "/api/3.0/mlflow/traces"),
    ("GET", "/api/3.0/mlflow/traces/tr-1"),
    ("POST", "/api/2.0/mlflow/datasets/create"),
    ("POST", "/v1/traces"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_routes_azure_ml_lacks_answer_an_empty_404(emulator, method, route):
    info = emulator.info
    token = emulator_token(info)
    response = requests.request(
        method,
        info["workspace_url"] + route,
        json={},
        headers={"Authorization": f"Bearer {token}"},
        verify=info["ca_bundle"],
        timeout=30,
    )
    assert response.status_code == 404 and response.content == b""
    # What the workspace does serve still answers.
    searched = requests.post(
        info["workspace_url"] + "/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        headers={"Authorization": f"Bearer {token}"},
        verify=info["ca_bundle"],
        timeout=30,
    )
    assert searched.status_code == 200
