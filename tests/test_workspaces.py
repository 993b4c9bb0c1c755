"""One identity per workspace: several workspaces on one host, each with its own principal.

The emulator serves two workspaces on one host (`--workspace-name` twice); each has a service
principal allowed on that workspace only. Tokens are chosen per workspace (host + ARM path),
so the last connect() never decides whose token another workspace's store sends.
"""

from __future__ import annotations

import pytest
import requests

import spark_aml_bridge
from spark_aml_bridge.errors import CredentialError


@pytest.fixture(scope="module")
def two_workspaces(tmp_path_factory: pytest.TempPathFactory):
    from spark_aml_bridge.emulator.process import start_emulator

    handle = start_emulator(
        str(tmp_path_factory.mktemp("emulator-two")),
        extra_args=["--workspace-name", "ws-a", "--workspace-name", "ws-b", "--no-databricks"],
    )
    yield handle
    handle.stop()


@pytest.fixture
def workspaces(two_workspaces, monkeypatch: pytest.MonkeyPatch):
    env = two_workspaces.info["env"]
    for name in (
        "AZURE_AUTHORITY_HOST",
        "SPARK_AML_BRIDGE_CA_BUNDLE",
        "SPARK_AML_BRIDGE_ARM_ENDPOINT",
    ):
        monkeypatch.setenv(name, env[name])
    return two_workspaces.info["workspaces"]


def _connect(ws: dict, info: dict, **settings):
    return spark_aml_bridge.connect(
        workspace=ws["tracking_uri"],
        credential="service-principal",
        tenant_id=info["tenant_id"],
        client_id=ws["client_id"],
        client_secret=ws["client_secret"],
        **settings,
    )


def _outside_read(
    info: dict, ws: dict, run_id: str, principal: dict | None = None
) -> requests.Response:
    """Plain HTTPS with a principal's bearer token (default: the workspace's own), no bridge."""
    principal = principal or ws
    token = requests.post(
        f"{info['env']['AZURE_AUTHORITY_HOST']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": principal["client_id"],
            "client_secret": principal["client_secret"],
            "scope": "https://management.azure.com/.default",
        },
        verify=info["ca_bundle"],
        timeout=30,
    ).json()["access_token"]
    base = ws["tracking_uri"].replace("azureml://", "https://").replace("/v1.0/", "/v2.0/")
    return requests.get(
        f"{base}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers={"Authorization": f"Bearer {token}"},
        verify=info["ca_bundle"],
        timeout=30,
    )


def test_emulator_lists_each_workspace_with_its_own_principal(two_workspaces):
    info = two_workspaces.info
    a, b = info["workspaces"]
    assert (a["name"], b["name"]) == ("ws-a", "ws-b")
    assert a["tracking_uri"] == info["tracking_uri"] and a["client_id"] == info["client_id"]
    assert a["workspace_arm_id"] == info["workspace_arm_id"]
    assert b["client_id"] != a["client_id"] and b["workspace_arm_id"].endswith("/workspaces/ws-b")
    assert b["tracking_uri"].split("/mlflow/")[0] == a["tracking_uri"].split("/mlflow/")[0]


def test_each_workspace_keeps_its_own_identity(two_workspaces, workspaces):
    import mlflow
    from mlflow import MlflowClient

    info = two_workspaces.info
    a, b = workspaces
    _connect(a, info)
    mlflow.set_experiment("identity-a")
    with mlflow.start_run() as run_a:
        mlflow.log_metric("m", 1.0)
    _connect(b, info)
    mlflow.set_experiment("identity-b")
    with mlflow.start_run() as run_b:
        mlflow.log_metric("m", 2.0)

    # In this process, A's store still sends A's token (the last connect() was B).
    assert MlflowClient(a["tracking_uri"]).get_run(run_a.info.run_id).data.metrics == {"m": 1.0}
    assert MlflowClient(b["tracking_uri"]).get_run(run_b.info.run_id).data.metrics == {"m": 2.0}
    # From the outside, each principal reads its own workspace.
    assert _outside_read(info, a, run_a.info.run_id).status_code == 200
    assert _outside_read(info, b, run_b.info.run_id).status_code == 200
    assert _outside_read(info, a, run_a.info.run_id, principal=b).status_code == 403
    assert _outside_read(info, b, run_b.info.run_id, principal=a).status_code == 403

    # Swapped credentials: 403, with the fix line; A keeps working with A's identity.
    with pytest.raises(CredentialError) as refused:
        spark_aml_bridge.connect(
            workspace=a["tracking_uri"],
            credential="service-principal",
            tenant_id=info["tenant_id"],
            client_id=b["client_id"],
            client_secret=b["client_secret"],
        )
    assert "refused" in str(refused.value) and "Fix:" in str(refused.value)
    assert "ws-a" in str(refused.value) or a["tracking_uri"].split("/")[2] in str(refused.value)
    assert MlflowClient(a["tracking_uri"]).get_run(run_a.info.run_id).info.run_id


def test_dual_tracking_between_two_workspaces_uses_each_identity(
    two_workspaces, workspaces, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    info = two_workspaces.info
    a, b = workspaces
    _connect(a, info)  # the primary's identity
    bridge = _connect(
        b, info, mode="dual", dual_primary=a["tracking_uri"], dual_spool_dir=str(tmp_path)
    )
    mlflow.set_experiment("dual-a-to-b")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
    assert bridge.dual.flush(120), bridge.dual.status()
    primary = MlflowClient(a["tracking_uri"]).get_run(run.info.run_id)
    mirror_id = primary.data.tags["spark_aml_bridge.mirror.run_id"]
    assert _outside_read(info, b, mirror_id).json()["run"]["data"]["metrics"][0]["value"] == 0.5
    assert _outside_read(info, a, run.info.run_id).status_code == 200
