"""The local Azure ML workspace emulator, exercised with real clients over real HTTPS.

azure-identity and MSAL against the authority, `requests` against ARM and the workspace, and the
stock MLflow REST client against the real MLflow server inside the emulator.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid

import jwt
import mlflow
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from spark_aml_bridge.emulator import (
    EmulatorError,
    EmulatorProcess,
    load_emulator_info,
    start_emulator,
)
from spark_aml_bridge.emulator.contract import SIGNING_KEY_FILE

ARM_SCOPE = "https://management.azure.com/.default"
STARTUP_TIMEOUT = 180  # generous: a loaded 2-core machine imports MLflow slowly
SHORT_LIFETIME = 4  # the session fixture short_token_emulator

INFO_KEYS = {
    "tracking_uri",
    "workspace_url",
    "workspace_arm_id",
    "subscription_id",
    "resource_group",
    "workspace_name",
    "region",
    "authority",
    "tenant_id",
    "client_id",
    "client_secret",
    "managed_identity_endpoint",
    "managed_identity_header",
    "managed_identity_client_id",
    "ca_bundle",
    "arm_endpoint",
    "admin_url",
    "admin_key",
    "ui_url",
    "token_lifetime",
    "pid",
    "mlflow_version",
    "env",
    "env_lines",
}
ENV_KEYS = {
    "SPARK_AML_BRIDGE_WORKSPACE",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "SPARK_AML_BRIDGE_CA_BUNDLE",
    "SPARK_AML_BRIDGE_ARM_ENDPOINT",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
}


def _start(state_dir, **kwargs) -> tuple[EmulatorProcess, float]:
    started = time.monotonic()
    handle = start_emulator(state_dir, timeout=STARTUP_TIMEOUT, **kwargs)
    return handle, time.monotonic() - started


@pytest.fixture
def emu(emulator: EmulatorProcess):
    """The session's emulator (tests/conftest.py), started once per test session."""
    yield emulator
    emulator.reset()  # faults, outages and revocations never leak into the next test


@pytest.fixture
def short_emu(short_token_emulator: EmulatorProcess):
    yield short_token_emulator
    short_token_emulator.reset()


def fetch_token(emu: EmulatorProcess, scope: str = ARM_SCOPE) -> str:
    info = emu.info
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


def workspace_get(emu: EmulatorProcess, token: str | None, route: str, base: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(
        (base or emu.info["workspace_url"]) + route,
        headers=headers,
        verify=emu.info["ca_bundle"],
        timeout=30,
    )


EXPERIMENTS_SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def craft_token(emu: EmulatorProcess, key=None, **changes) -> str:
    """A token like the emulator's, re-signed (with its key unless `key`) after `changes`."""
    claims = jwt.decode(fetch_token(emu), options={"verify_signature": False})
    claims.update(changes)
    if key is None:
        key = serialization.load_pem_private_key(
            (emu.state_dir / SIGNING_KEY_FILE).read_bytes(), password=None
        )
    kid = jwt.get_unverified_header(fetch_token(emu))["kid"]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def mlflow_at(emu: EmulatorProcess, monkeypatch: pytest.MonkeyPatch):
    """Point the stock MLflow REST client at the workspace with a static bearer token."""

    def point(version: str = "v2.0", token: str | None = None) -> str:
        url = emu.info["workspace_url"].replace("/mlflow/v2.0/", f"/mlflow/{version}/")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token or fetch_token(emu))
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", emu.info["ca_bundle"])
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        return url

    saved = {k: os.environ.get(k) for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    yield point
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None
    for name, value in saved.items():  # set_experiment exports these for subprocesses
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# -- emulator.json and process handling -------------------------------------------------------


def test_emulator_json_is_the_documented_contract(emu: EmulatorProcess):
    info = load_emulator_info(emu.state_dir)
    assert info == emu.info
    assert INFO_KEYS <= set(info)
    assert set(info["env"]) == ENV_KEYS
    assert stat.S_IMODE(os.stat(emu.state_dir / "emulator.json").st_mode) == 0o600
    arm_id = (
        f"/subscriptions/{info['subscription_id']}/resourceGroups/rg-local"
        "/providers/Microsoft.MachineLearningServices/workspaces/ws-local"
    )
    assert info["workspace_arm_id"] == arm_id
    host = info["admin_url"].split("/")[2]
    assert info["tracking_uri"] == f"azureml://{host}/mlflow/v1.0{arm_id}"
    assert info["workspace_url"] == f"https://{host}/mlflow/v2.0{arm_id}"
    assert info["env"]["SPARK_AML_BRIDGE_WORKSPACE"] == info["tracking_uri"]
    assert info["env"]["AZURE_AUTHORITY_HOST"] == info["authority"]
    assert info["managed_identity_endpoint"] == info["authority"] + "/msi/token"
    assert info["pid"] == emu.pid
    assert info["mlflow_version"] == mlflow.__version__
    assert os.path.isabs(info["ca_bundle"])
    for url in (info["authority"], info["arm_endpoint"], info["admin_url"]):
        assert url.startswith("https://127.0.0.1:")
    assert info["ui_url"].startswith("http://127.0.0.1:")
    # Separate ports are separate hosts: a client must send workspace tokens only to the workspace.
    ports = {u.split(":")[2].split("/")[0] for u in (info["authority"], info["arm_endpoint"])}
    ports |= {host.split(":")[1], info["ui_url"].split(":")[2].rstrip("/")}
    assert len(ports) == 4
    assert sorted(info["env_lines"]) == sorted(f"export {k}='{v}'" for k, v in info["env"].items())
    uuid.UUID(info["tenant_id"]), uuid.UUID(info["client_id"]), uuid.UUID(info["subscription_id"])


def test_package_import_stays_cheap():
    code = "import sys, spark_aml_bridge.emulator; print('mlflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_second_emulator_on_the_same_state_dir_is_refused(emu: EmulatorProcess):
    with pytest.raises(EmulatorError, match="already serves"):
        start_emulator(emu.state_dir, timeout=STARTUP_TIMEOUT)
    assert load_emulator_info(emu.state_dir)["pid"] == emu.pid


def test_startup_failure_reports_the_emulators_output(tmp_path):
    with pytest.raises(EmulatorError, match="token-lifetime must be at least"):
        start_emulator(tmp_path, extra_args=["--token-lifetime", "0"], timeout=STARTUP_TIMEOUT)


def test_load_emulator_info_without_a_running_emulator(tmp_path):
    with pytest.raises(EmulatorError, match="No emulator is running"):
        load_emulator_info(tmp_path)


def test_restart_keeps_ids_and_data_and_sigterm_shuts_down_cleanly(tmp_path, monkeypatch):
    first, first_seconds = _start(tmp_path)
    try:
        token = fetch_token(first)
        client = MlflowClient(first.info["workspace_url"])
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", first.info["ca_bundle"])
        experiment_id = client.create_experiment("survives-restart")
        run_id = client.create_run(experiment_id).info.run_id
        default_id = client.get_experiment_by_name("Default").experiment_id
    finally:
        code = first.stop()
    assert code == 0
    assert not (tmp_path / "emulator.json").exists()
    assert not (tmp_path / "emulator.env").exists()
    assert (tmp_path / "mlflow.db").exists()

    second, second_seconds = _start(tmp_path)
    try:
        print(f"\nemulator startup: new dir {first_seconds:.2f} s, restart {second_seconds:.2f} s")
        for key in ("tenant_id", "client_id", "client_secret", "subscription_id", "ca_bundle"):
            assert second.info[key] == first.info[key]
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", fetch_token(second))
        client = MlflowClient(second.info["workspace_url"])
        assert client.get_experiment_by_name("survives-restart").experiment_id == experiment_id
        # The workspace's GUIDs are kept in the state dir, not made up again.
        assert client.get_run(run_id).info.experiment_id == experiment_id
        assert client.get_experiment_by_name("Default").experiment_id == default_id
    finally:
        assert second.stop() == 0


# -- authority ------------------------------------------------------------------------------


def _jwks_key(emu: EmulatorProcess, kid: str):
    info = emu.info
    config = requests.get(
        f"{info['authority']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration",
        verify=info["ca_bundle"],
        timeout=30,
    ).json()
    assert config["token_endpoint"] == f"{info['authority']}/{info['tenant_id']}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].startswith(info["authority"])
    keys = requests.get(config["jwks_uri"], verify=info["ca_bundle"], timeout=30).json()["keys"]
    return next(jwt.PyJWK(k).key for k in keys if k["kid"] == kid)


def test_client_secret_credential_gets_a_valid_arm_token(emu: EmulatorProcess):
    from azure.identity import ClientSecretCredential

    info = emu.info
    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    before = emu.stats()["token_requests"]["client_credentials"]
    token = credential.get_token(ARM_SCOPE)
    assert emu.stats()["token_requests"]["client_credentials"] == before + 1

    header = jwt.get_unverified_header(token.token)
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        token.token,
        _jwks_key(emu, header["kid"]),
        algorithms=["RS256"],
        audience="https://management.azure.com/",
    )
    assert claims["iss"] == f"https://sts.windows.net/{info['tenant_id']}/"
    assert claims["tid"] == info["tenant_id"]
    assert claims["appid"] == info["client_id"]
    assert claims["idtyp"] == "app"
    assert claims["sub"] == claims["oid"]
    assert claims["exp"] - claims["iat"] == info["token_lifetime"] == 3600
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert claims["uti"] != jwt.decode(fetch_token(emu), options={"verify_signature": False})["uti"]
    assert abs(token.expires_on - claims["exp"]) <= 2


def test_client_secret_credential_trusts_the_ca_through_requests_ca_bundle(
    emu: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
):
    from azure.identity import ClientSecretCredential

    info = emu.info
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
    )
    assert credential.get_token(ARM_SCOPE).token.count(".") == 2


@pytest.mark.parametrize("trust", ["connection_verify", "REQUESTS_CA_BUNDLE"])
def test_managed_identity_credential_app_service_protocol(
    emu: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, trust: str
):
    from azure.identity import ManagedIdentityCredential

    info = emu.info
    monkeypatch.setenv("IDENTITY_ENDPOINT", info["managed_identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", info["managed_identity_header"])
    if trust == "connection_verify":
        credential = ManagedIdentityCredential(connection_verify=info["ca_bundle"])
    else:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
        credential = ManagedIdentityCredential(client_id=info["managed_identity_client_id"])
    before = emu.stats()["token_requests"]["managed_identity"]
    token = credential.get_token(ARM_SCOPE)
    assert emu.stats()["token_requests"]["managed_identity"] == before + 1
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["appid"] == info["managed_identity_client_id"]
    assert claims["aud"] == "https://management.azure.com/"
    assert claims["idtyp"] == "app"
    assert abs(token.expires_on - claims["exp"]) <= 2
    assert workspace_get(emu, token.token, EXPERIMENTS_SEARCH).status_code == 200


def test_managed_identity_endpoint_checks_its_secret_header(emu: EmulatorProcess):
    info = emu.info
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}

    def call(headers):
        return requests.get(
            info["managed_identity_endpoint"],
            params=params,
            headers=headers,
            verify=info["ca_bundle"],
            timeout=30,
        )

    missing = call({})
    assert missing.status_code == 400 and missing.json()["statusCode"] == 400
    wrong = call({"X-IDENTITY-HEADER": "not-the-secret"})
    assert wrong.status_code == 401 and "message" in wrong.json()
    good = call({"X-IDENTITY-HEADER": info["managed_identity_header"]})
    body = good.json()
    assert good.status_code == 200
    assert (
        body["token_type"] == "Bearer" and body["client_id"] == info["managed_identity_client_id"]
    )
    assert body["resource"] == "https://management.azure.com"
    assert int(body["expires_on"]) > time.time()


def _token_request(emu: EmulatorProcess, **changes):
    info = emu.info
    tenant = changes.pop("tenant", info["tenant_id"])
    data = {
        "grant_type": "client_credentials",
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],
        "scope": ARM_SCOPE,
        **changes,
    }
    return requests.post(
        f"{info['authority']}/{tenant}/oauth2/v2.0/token",
        data=data,
        verify=info["ca_bundle"],
        timeout=30,
    )


@pytest.mark.parametrize(
    ("changes", "status", "error", "code"),
    [
        ({"tenant": str(uuid.uuid4())}, 400, "invalid_request", 90002),
        ({"client_secret": "wrong-secret"}, 401, "invalid_client", 7000215),
        ({"client_id": str(uuid.uuid4())}, 400, "unauthorized_client", 700016),
        ({"scope": "https://vault.azure.net/.default"}, 400, "invalid_scope", 500011),
    ],
    ids=["tenant", "secret", "client", "scope"],
)
def test_authority_errors_have_entra_id_shape(emu, changes, status, error, code):
    response = _token_request(emu, **changes)
    body = response.json()
    assert response.status_code == status
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]
    assert "access_token" not in body


def test_legacy_arm_scope_is_accepted(emu: EmulatorProcess):
    response = _token_request(emu, scope="https://management.core.windows.net//.default")
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://management.core.windows.net/"
    assert workspace_get(emu, response.json()["access_token"], EXPERIMENTS_SEARCH).ok


def test_unknown_tenant_discovery_and_azure_identity_errors(emu: EmulatorProcess):
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    info = emu.info
    response = requests.get(
        f"{info['authority']}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration",
        verify=info["ca_bundle"],
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error_description"].startswith("AADSTS90002:")

    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        "wrong-secret",
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(ARM_SCOPE)


# -- ARM ------------------------------------------------------------------------------------


def _arm_get(emu: EmulatorProcess, path: str, token: str | None, params=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        emu.info["arm_endpoint"] + path,
        params={"api-version": "2024-10-01"} if params is None else params,
        headers=headers,
        verify=emu.info["ca_bundle"],
        timeout=30,
    )


def test_arm_returns_the_workspace_resource(emu: EmulatorProcess):
    info = emu.info
    response = _arm_get(emu, info["workspace_arm_id"], fetch_token(emu))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == info["workspace_arm_id"]
    assert body["name"] == "ws-local"
    assert body["type"] == "Microsoft.MachineLearningServices/workspaces"
    assert body["location"] == "local" and body["kind"] == "Default"
    props = body["properties"]
    assert props["mlFlowTrackingUri"] == info["tracking_uri"]
    assert props["provisioningState"] == "Succeeded"
    assert props["friendlyName"] == "ws-local"
    uuid.UUID(props["workspaceId"])
    discovery = requests.get(props["discoveryUrl"], verify=info["ca_bundle"], timeout=30)
    assert discovery.json()["api"] == info["admin_url"].removesuffix("/_emulator")
    # ARM paths are case-insensitive.
    assert _arm_get(emu, info["workspace_arm_id"].lower(), fetch_token(emu)).status_code == 200


def test_arm_errors(emu: EmulatorProcess):
    info = emu.info
    token = fetch_token(emu)
    arm_id = info["workspace_arm_id"]

    missing_version = _arm_get(emu, arm_id, token, params={})
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["code"] == "MissingApiVersionParameter"

    unknown_ws = _arm_get(emu, arm_id.replace("ws-local", "ws-other"), token)
    assert unknown_ws.status_code == 404
    error = unknown_ws.json()["error"]
    assert error["code"] == "ResourceNotFound"
    assert error["message"].startswith(
        "The Resource 'Microsoft.MachineLearningServices/workspaces/ws-other' under resource "
        "group 'rg-local' was not found."
    )
    unknown_rg = _arm_get(emu, arm_id.replace("rg-local", "rg-other"), token)
    assert (unknown_rg.status_code, unknown_rg.json()["error"]["code"]) == (
        404,
        "ResourceGroupNotFound",
    )

    no_token = _arm_get(emu, arm_id, None)
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "AuthenticationFailed"
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")

    garbage = _arm_get(emu, arm_id, "not-a-jwt")
    assert garbage.status_code == 401
    assert garbage.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]


# -- workspace: MLflow through the AML prefix ---------------------------------------------------


@pytest.mark.parametrize("version", ["v2.0", "v1.0"])
def test_stock_mlflow_client_tracks_through_the_workspace(mlflow_at, emu, version):
    mlflow_at(version)
    name = f"emulator-{version}-{uuid.uuid4().hex[:6]}"
    experiment = mlflow.set_experiment(name)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("loss", 0.25, step=1)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
        mlflow.set_tag("team", "ml")
        MlflowClient().log_batch(
            run.info.run_id,
            metrics=[mlflow.entities.Metric("batch", float(i), 0, i) for i in range(10)],
            params=[mlflow.entities.Param("beta", "x")],
        )
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.params == {"alpha": "0.5", "beta": "x"}
    assert data.metrics == {"loss": 0.25, "acc": 0.9, "f1": 0.8, "batch": 9.0}
    found = mlflow.search_runs([experiment.experiment_id], filter_string="params.alpha = '0.5'")
    assert list(found["run_id"]) == [run.info.run_id]
    found = mlflow.search_runs(
        [experiment.experiment_id], filter_string="metrics.acc > 0.5 and tags.team = 'ml'"
    )
    assert list(found["run_id"]) == [run.info.run_id]
    routes = emu.stats()["workspace_requests"]
    assert routes["POST /api/2.0/mlflow/runs/create"] >= 1
    assert routes["POST /api/2.0/mlflow/runs/log-batch"] >= 1


def test_artifacts_round_trip_under_the_prefix(mlflow_at, tmp_path):
    # Runs get azureml:// artifact URIs (the run-history service, test_emulator_artifacts.py);
    # MLflow's own artifact proxy still answers under the prefix for an explicit location.
    mlflow_at()
    name = f"artifacts-{uuid.uuid4().hex[:6]}"
    mlflow.create_experiment(name, artifact_location=f"mlflow-artifacts:/{name}")
    mlflow.set_experiment(name)
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/hello.txt")
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes/hello.txt", dst_path=str(tmp_path)
    )
    assert open(downloaded).read() == "hello"


def test_log_metric_latency_through_the_workspace(mlflow_at, emu):
    """Prints the round trip (HTTPS, bearer check, SQLite); no timing is asserted."""
    mlflow_at()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"latency-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(20):  # warm up the connection pool and SQLite
        client.log_metric(run_id, "warm", step, step=step)
    samples = []
    for step in range(200):
        started = time.perf_counter()
        client.log_metric(run_id, "x", step, step=step)
        samples.append(time.perf_counter() - started)
    samples.sort()
    median, p90 = samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.9)] * 1000
    version = mlflow.__version__
    print(f"\nlog_metric via emulator (MLflow {version}): median {median:.2f} ms, p90 {p90:.2f} ms")
    assert len(client.get_metric_history(run_id, "x")) == 200


def _assert_aml_401(response, message_part: str):
    assert response.status_code == 401, response.text
    body = response.json()
    assert "error_code" not in body
    assert body["error"]["code"] == "UserError"
    assert body["error"]["innerError"]["code"] == "AuthorizationError"
    assert message_part.lower() in body["error"]["message"].lower()
    assert body["componentName"] == "mlflow"
    assert {"operation", "request"} <= set(body["correlation"])
    assert body["environment"] == body["location"] == "local"
    assert body["time"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_workspace_rejects_missing_and_bad_tokens_with_aml_body(emu: EmulatorProcess):
    _assert_aml_401(workspace_get(emu, None, EXPERIMENTS_SEARCH), "Bearer token not provided.")
    _assert_aml_401(workspace_get(emu, "garbage", EXPERIMENTS_SEARCH), "invalid")
    past = int(time.time()) - 600
    expired = craft_token(emu, iat=past - 3600, nbf=past - 3600, exp=past)
    _assert_aml_401(workspace_get(emu, expired, EXPERIMENTS_SEARCH), "expired")
    wrong_audience = craft_token(emu, aud="https://storage.azure.com/")
    _assert_aml_401(workspace_get(emu, wrong_audience, EXPERIMENTS_SEARCH), "audience")
    other_tenant = craft_token(emu, tid=str(uuid.uuid4()))
    _assert_aml_401(workspace_get(emu, other_tenant, EXPERIMENTS_SEARCH), "tenant")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = craft_token(emu, key=other_key)
    _assert_aml_401(workspace_get(emu, forged, EXPERIMENTS_SEARCH), "signature")
    # Both audience spellings ARM accepts are accepted.
    for audience in ("https://management.azure.com", "https://management.azure.com/"):
        assert workspace_get(emu, craft_token(emu, aud=audience), EXPERIMENTS_SEARCH).ok


def test_mlflow_client_is_not_retried_on_401(mlflow_at, emu):
    mlflow_at(token="garbage")
    emu.reset_stats()
    with pytest.raises(MlflowException, match="AuthorizationError"):
        MlflowClient().search_experiments()
    stats = emu.stats()
    assert stats["auth_failures"] == 1
    assert stats["workspace_requests"] == {"POST /api/2.0/mlflow/experiments/search": 1}


def test_revoked_tokens_are_rejected_and_fresh_ones_work(emu: EmulatorProcess):
    old = fetch_token(emu)
    assert workspace_get(emu, old, EXPERIMENTS_SEARCH).ok
    emu.revoke_tokens()
    _assert_aml_401(workspace_get(emu, old, EXPERIMENTS_SEARCH), "revoked")
    assert _arm_get(emu, emu.info["workspace_arm_id"], old).status_code == 401
    assert workspace_get(emu, fetch_token(emu), EXPERIMENTS_SEARCH).ok
    emu.reset()
    assert workspace_get(emu, old, EXPERIMENTS_SEARCH).ok


def test_logged_model_routes_answer_404_with_an_empty_body(emu: EmulatorProcess):
    info, token = emu.info, fetch_token(emu)
    headers = {"Authorization": f"Bearer {token}"}
    for method, route, body in [
        ("POST", "/api/2.0/mlflow/logged-models", {"experiment_id": "0"}),
        ("POST", "/api/2.0/mlflow/logged-models/search", {"experiment_ids": ["0"]}),
        ("GET", "/api/2.0/mlflow/logged-models/m-123", None),
    ]:
        response = requests.request(
            method,
            info["workspace_url"] + route,
            json=body,
            headers=headers,
            verify=info["ca_bundle"],
            timeout=30,
        )
        assert response.status_code == 404
        assert response.content == b""


def test_only_the_emulated_workspace_prefix_is_served(emu: EmulatorProcess):
    info, token = emu.info, fetch_token(emu)
    base = info["admin_url"].removesuffix("/_emulator")
    other = info["workspace_url"].replace("ws-local", "ws-other")
    response = workspace_get(emu, token, EXPERIMENTS_SEARCH, base=other)
    assert response.status_code == 404 and response.json()["error"]["code"] == "UserError"
    bare = workspace_get(emu, token, EXPERIMENTS_SEARCH, base=base)
    assert bare.status_code == 404 and "error_code" not in bare.json()
    # The fixed words of the prefix match case-insensitively.
    lowered = info["workspace_url"].replace("resourceGroups", "resourcegroups")
    assert workspace_get(emu, token, EXPERIMENTS_SEARCH, base=lowered).ok


def test_mlflow_ui_is_plain_http_without_auth(emu: EmulatorProcess):
    ui = emu.info["ui_url"]
    assert requests.get(ui, timeout=30).status_code == 200
    response = requests.get(ui + "api/2.0/mlflow/experiments/search?max_results=5", timeout=30)
    assert response.status_code == 200 and "experiments" in response.json()


# -- faults, outages, stats --------------------------------------------------------------------


def test_admin_api_requires_the_key(emu: EmulatorProcess):
    response = requests.get(
        emu.info["admin_url"] + "/stats", verify=emu.info["ca_bundle"], timeout=30
    )
    assert response.status_code == 403
    with pytest.raises(EmulatorError, match="status must be"):
        emu.inject_faults(status=200)


def test_fault_before_returns_the_status_with_retry_after_and_is_not_applied(emu):
    token = fetch_token(emu)
    emu.inject_faults(status=429, count=2, retry_after=7, path_contains="experiments/search")
    for _ in range(2):
        response = workspace_get(emu, token, EXPERIMENTS_SEARCH)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"]["innerError"]["code"] == "TooManyRequests"
        assert "error_code" not in response.json()
    assert workspace_get(emu, token, EXPERIMENTS_SEARCH).ok
    # A fault for another route leaves this one alone.
    emu.inject_faults(status=503, path_contains="runs/create")
    assert workspace_get(emu, token, EXPERIMENTS_SEARCH).ok
    assert emu.admin("GET", "faults")["pending"][0]["path_contains"] == "runs/create"


@pytest.mark.parametrize(("status", "retry_after"), [(503, 1), (503, 0), (429, 1)])
def test_mlflow_client_survives_a_burst_with_retry_after(mlflow_at, emu, status, retry_after):
    mlflow_at()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"burst-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id).info.run_id
    emu.reset_stats()
    emu.inject_faults(status=status, count=2, retry_after=retry_after, path_contains="log-metric")
    client.log_metric(run_id, "survived", 1.0)
    assert emu.stats()["workspace_requests"]["POST /api/2.0/mlflow/runs/log-metric"] == 3
    assert [m.value for m in client.get_metric_history(run_id, "survived")] == [1.0]


def test_fault_after_applies_the_write_and_loses_the_response(mlflow_at, emu, monkeypatch):
    mlflow_at()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"after-{uuid.uuid4().hex[:6]}")

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    emu.inject_faults(status=503, path_contains="runs/create", when="after")
    with pytest.raises(MlflowException):
        client.create_run(experiment_id)
    assert len(client.search_runs([experiment_id])) == 1  # the create was applied

    # With retries on, the stock client repeats the create: the duplicate a client must avoid.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    emu.inject_faults(status=503, retry_after=0, path_contains="runs/create", when="after")
    client.create_run(experiment_id)
    assert len(client.search_runs([experiment_id])) == 3


def test_outage_answers_503_with_retry_after_then_recovers(mlflow_at, emu, monkeypatch):
    mlflow_at()
    token = fetch_token(emu)
    client = MlflowClient()
    experiment_id = client.create_experiment(f"outage-{uuid.uuid4().hex[:6]}")
    emu.outage(600)  # long enough for any machine; ended below
    response = workspace_get(emu, token, EXPERIMENTS_SEARCH)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["innerError"]["code"] == "ServiceUnavailable"
    emu.reset()
    assert workspace_get(emu, token, EXPERIMENTS_SEARCH).ok
    # A client that honours Retry-After outlasts a short outage (a slow machine only helps).
    emu.outage(2)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "8")
    assert client.get_experiment(experiment_id).experiment_id == experiment_id


def test_stats_count_requests_and_reset(emu: EmulatorProcess):
    emu.reset_stats()
    assert emu.stats()["workspace_requests"] == {}
    token = fetch_token(emu)
    workspace_get(emu, token, EXPERIMENTS_SEARCH)
    workspace_get(emu, None, EXPERIMENTS_SEARCH)
    _arm_get(emu, emu.info["workspace_arm_id"], token)
    stats = emu.stats()
    assert stats["token_requests"] == {
        "client_credentials": 1,
        "managed_identity": 0,
        "other": 0,
        "total": 1,
    }
    assert stats["workspace_requests"] == {"GET /api/2.0/mlflow/experiments/search": 2}
    assert stats["auth_failures"] == 1
    assert stats["arm_requests"] == 1


# -- what AML does not support ---------------------------------------------------------------


def test_queries_aml_does_not_support_are_rejected_mlflow_style(mlflow_at):
    mlflow_at()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"limits-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "model", "a OR b")
    rejected = [
        {"filter_string": "params.model LIKE 'a%'"},
        {"filter_string": "params.model ilike 'a%'"},
        {"filter_string": "params.model = 'a' OR params.model = 'b'"},
        {"order_by": ["metrics.loss DESC"]},
        {"order_by": ["params.model"]},
        {"order_by": ["tags.team ASC"]},
    ]
    for kwargs in rejected:
        with pytest.raises(MlflowException, match="does not support") as caught:
            client.search_runs([experiment_id], **kwargs)
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    allowed = [
        {"filter_string": "params.model = 'a OR b'"},
        {"filter_string": "metrics.error_rate < 1 and params.model != 'x'"},
        {"order_by": ["attributes.start_time DESC"]},
        {},
    ]
    for kwargs in allowed:
        client.search_runs([experiment_id], **kwargs)
    with pytest.raises(MlflowException, match="Renaming experiments"):
        client.rename_experiment(experiment_id, "new-name")


# -- token lifetime ----------------------------------------------------------------------------


def test_short_token_lifetime_expires_tokens(short_emu: EmulatorProcess):
    from azure.identity import ClientSecretCredential

    info = short_emu.info
    assert info["token_lifetime"] == SHORT_LIFETIME
    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    token = credential.get_token(ARM_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == SHORT_LIFETIME
    time.sleep(max(0.0, claims["exp"] + 1.5 - time.time()))
    _assert_aml_401(workspace_get(short_emu, token.token, EXPERIMENTS_SEARCH), "expired")
    arm = _arm_get(short_emu, info["workspace_arm_id"], token.token)
    assert arm.status_code == 401
    assert arm.json()["error"]["code"] == "ExpiredAuthenticationToken"
    fresh = credential.get_token(ARM_SCOPE)
    assert fresh.token != token.token
    assert workspace_get(short_emu, fresh.token, EXPERIMENTS_SEARCH).ok
