"""Synapse/Fabric credentials under the runtime double, against the emulator over real HTTPS."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
import uuid

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.credentials.identity import token_claims
from spark_aml_bridge.emulator.synapse import utils
from spark_aml_bridge.errors import CredentialError
from spark_aml_bridge.platforms.synapse.credentials import audience_for_scope, token_identity
from spark_aml_bridge.platforms.synapse.fabric import ARM_TOKEN_UNSUPPORTED

JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")


@pytest.fixture(autouse=True)
def fresh_counts():
    utils.calls.clear()


def _experiment(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_notebook_connect_uses_the_notebook_token_and_names_the_identity(emulator, synapse_runtime):
    synapse_runtime(emulator)
    bridge = spark_aml_bridge.connect()
    assert bridge.platform.platform == "synapse"
    assert bridge.session.credential.source == "notebookutils"
    # Pipelines and jobs run as the workspace managed identity: the report says so.
    assert "managed identity id-local" in bridge.identity
    assert "getToken('AzureManagement')" in bridge.identity
    mlflow.set_experiment(_experiment("synapse-notebook"))
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["spark_aml_bridge.platform"] == "synapse"
    assert tags["spark_aml_bridge.synapse_workspace"] == "syn-local"
    assert tags["spark_aml_bridge.synapse_pool"] == "pool1"
    assert tags["spark_aml_bridge.job_id"] == "7"
    assert tags["mlflow.user"] == "alice@contoso.example"
    # Checking the source and the first MLflow call shared one runtime call.
    assert utils.calls["getToken"] == 1


def test_pipeline_runs_are_reported_as_such(emulator, synapse_runtime):
    synapse_runtime(emulator, session="pipeline")
    assert spark_aml_bridge.connect().platform.details["session"] == "pipeline"


def test_tokens_refresh_across_lifetimes_with_no_call_per_request(
    short_token_emulator, synapse_runtime
):
    synapse_runtime(short_token_emulator)
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(_experiment("synapse-lifetimes"))
    short_token_emulator.reset_stats()
    utils.calls.clear()
    lifetime = short_token_emulator.info["token_lifetime"]
    requests = 0
    started = time.time()
    with mlflow.start_run():
        while time.time() - started < 4 * lifetime:
            mlflow.log_metric("m", requests, step=requests)
            requests += 1
    elapsed = time.time() - started
    stats = short_token_emulator.stats()
    token_calls = utils.calls["getToken"]
    assert stats["auth_failures"] == 0
    assert requests > 50
    assert elapsed / lifetime * 0.75 - 1 <= token_calls <= elapsed / lifetime * 2 + 1
    # Every token the emulator issued came from getToken; a refresh already in flight when the
    # counters were reset may be counted by the emulator only.
    assert token_calls <= stats["token_requests"]["managed_identity"] <= token_calls + 1
    assert bridge.session.credential.source == "notebookutils"


def test_token_library_serves_where_the_notebook_utilities_are_missing(
    emulator, spark, synapse_runtime
):
    synapse_runtime(emulator, spark, notebook_utils=False)
    bridge = spark_aml_bridge.connect()
    assert bridge.session.credential.source == "token-library"
    assert utils.calls["TokenLibrary.getAccessToken"] == 1 and utils.calls["getToken"] == 0
    token = bridge.session.tokens.access_token()
    claims = token_claims(token.token)
    assert int(token.expires_on) == claims["exp"]  # expiry from the token itself
    details = bridge.platform.details
    assert bridge.platform.role == "driver"
    assert details["synapse_pool"] == "pool1"  # from spark.synapse.pool.name
    assert details["spark_app_id"] == spark.sparkContext.applicationId


def _executor_probe(experiment_id: str):
    def probe(batches):
        import mlflow
        import pandas as pd

        from spark_aml_bridge import session

        for frame in batches:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_metric("rows", len(frame))
            sources = sorted({s.credential.source for s in session.sessions()})
            yield pd.DataFrame({"run_id": [run.info.run_id], "source": [",".join(sources)]})

    return probe


def test_executors_track_with_the_relayed_token_and_nothing_leaks(
    emulator, spark, synapse_runtime, caplog
):
    caplog.set_level(logging.DEBUG)
    vault_secret = emulator.info["client_secret"]
    synapse_runtime(emulator, spark)
    environment = spark.sparkContext.environment
    # Workers must not fall back on service principal variables the test JVM may have inherited.
    blanked = {k: environment.get(k) for k in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID")}
    for key in blanked:
        environment[key] = ""
    try:
        bridge = spark_aml_bridge.connect()
        assert bridge.executors_linked
        experiment_id = mlflow.set_experiment(_experiment("synapse-executors")).experiment_id
        rows = (
            spark.range(0, 10, numPartitions=2)
            .mapInPandas(_executor_probe(experiment_id), "run_id string, source string")
            .collect()
        )
    finally:
        for key, value in blanked.items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
    assert {r.source for r in rows} == {"relayed-token"}
    # The token library stays on the driver; executors got its tokens from the driver service.
    assert bridge._executors.stats()["token_requests"] >= 1
    client = MlflowClient()
    for row in rows:
        tags = client.get_run(row.run_id).data.tags
        assert tags["spark_aml_bridge.platform"] == "synapse"
        assert tags["spark_aml_bridge.role"] == "executor"
        assert tags["spark_aml_bridge.synapse_pool"] == "pool1"

    # No token or secret in Spark conf, the Spark UI, logs or reprs.
    conf_text = json.dumps(spark.sparkContext.getConf().getAll())
    app_id = spark.sparkContext.applicationId
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app_id}/environment"
    with urllib.request.urlopen(url, timeout=30) as response:  # the local Spark UI
        ui_text = response.read().decode()
    reprs = " ".join(
        repr(x)
        for x in (bridge, bridge.session.config, bridge.session.tokens, bridge.session.credential)
    )
    # py4j's DEBUG wire log prints every command, the executors' environment included (that is
    # how Spark ships it): it is the transport's trace, not a log of ours.
    logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("py4j"))
    for text in (conf_text, ui_text, logs, reprs):
        assert vault_secret not in text and not JWT.search(text)


def _key_vault_settings(monkeypatch, emulator, linked_service="ls_kv", **extra):
    info = emulator.info
    values = {
        "SPARK_AML_BRIDGE_TENANT_ID": info["tenant_id"],
        "SPARK_AML_BRIDGE_CLIENT_ID": info["client_id"],
        "SPARK_AML_BRIDGE_CLIENT_SECRET_NAME": "aml-sp-secret",
        "SPARK_AML_BRIDGE_AUTHORITY": info["authority"],
        **extra,
    }
    if linked_service:
        values["SPARK_AML_BRIDGE_KEY_VAULT_LINKED_SERVICE"] = linked_service
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_service_principal_with_its_secret_from_key_vault(
    emulator, synapse_runtime, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = emulator.info["client_secret"]
    synapse_runtime(
        emulator,
        vaults={"kv-local": {"aml-sp-secret": secret}},
        linked_services={"ls_kv": "kv-local"},
    )
    _key_vault_settings(monkeypatch, emulator)
    bridge = spark_aml_bridge.connect()
    assert bridge.session.credential.source == "key-vault-sp"
    assert "app " + emulator.info["client_id"][:8] in bridge.identity
    assert "linked service ls_kv" in bridge.identity
    assert utils.calls["getSecretWithLS"] == 1 and utils.calls["getToken"] == 0
    mlflow.set_experiment(_experiment("synapse-kv"))
    with mlflow.start_run():
        mlflow.log_param("p", 1)
    assert secret not in repr(bridge) + repr(bridge.session.config) + caplog.text


@pytest.mark.parametrize(
    ("runtime_options", "settings", "expected"),
    [
        (
            {"linked_services": {"ls_other": "kv-local"}},
            {"linked_service": "ls_kv"},
            ["linked service 'ls_kv' does not exist", "create an Azure Key Vault linked service"],
        ),
        (
            {"linked_services": {"ls_kv": "kv-local"}, "vault_readers": {"kv-local": ["user"]}},
            {"linked_service": "ls_kv"},
            ["was refused", "Synapse workspace managed identity", "'Key Vault Secrets User'"],
        ),
        (
            {"linked_services": {"ls_kv": "kv-local"}},
            {"linked_service": "ls_kv", "SPARK_AML_BRIDGE_CLIENT_SECRET_NAME": "nope"},
            ["no secret 'nope'", "client_secret_name"],
        ),
        (
            {"vault_readers": {"kv-local": ["workspace"]}},
            {"linked_service": None, "SPARK_AML_BRIDGE_KEY_VAULT": "kv-local"},
            ["Key Vault 'kv-local' was refused", "your user account"],
        ),
    ],
    ids=["linked-service-missing", "workspace-identity-denied", "secret-missing", "user-denied"],
)
def test_key_vault_failures_name_the_fix(
    emulator, synapse_runtime, monkeypatch, runtime_options, settings, expected
):
    secret = emulator.info["client_secret"]
    synapse_runtime(emulator, vaults={"kv-local": {"aml-sp-secret": secret}}, **runtime_options)
    settings = dict(settings)
    _key_vault_settings(monkeypatch, emulator, settings.pop("linked_service"), **settings)
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    message = str(info.value)
    for text in expected:
        assert text in message
    assert secret not in message


def test_workspace_refusal_names_the_identity_and_the_role(emulator, synapse_runtime):
    synapse_runtime(emulator)
    spark_aml_bridge.connect()
    experiment_id = mlflow.set_experiment(_experiment("synapse-403")).experiment_id
    run = MlflowClient().create_run(experiment_id)
    emulator.inject_faults(status=403, count=1, path_contains="log-parameter")
    try:
        with pytest.raises(Exception) as info:  # noqa: B017 - MLflow wraps our error
            MlflowClient().log_param(run.info.run_id, "p", 1)
    finally:
        emulator.reset()
    message = str(info.value)
    assert "managed identity id-local" in message
    assert "grant this identity a role on the workspace" in message


def test_fabric_without_an_arm_audience_says_so(emulator, synapse_runtime):
    synapse_runtime(emulator, flavour="fabric")
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    assert ARM_TOKEN_UNSUPPORTED in str(info.value)
    assert "- notebookutils:" in str(info.value) and "- token-library:" not in str(info.value)


def test_fabric_with_an_arm_audience_uses_the_synapse_path(emulator, synapse_runtime):
    synapse_runtime(emulator, flavour="fabric", arm_audience=True)
    bridge = spark_aml_bridge.connect()
    assert bridge.platform.platform == "fabric"
    assert bridge.session.credential.source == "notebookutils"
    assert bridge.platform.details["fabric_workspace_id"].endswith("fab1")


def test_identity_and_audience_helpers():
    assert token_identity({"upn": "bob@contoso.com", "idtyp": "user"}) == "user bob@contoso.com"
    mirid = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Synapse/workspaces/syn-ws"
    assert token_identity({"xms_mirid": mirid}) == "Synapse workspace managed identity syn-ws"
    assert token_identity({"appid": "1234567890ab"}).startswith("service principal 12345678")
    assert audience_for_scope("https://management.azure.com/.default", "X") == "X"
    assert audience_for_scope("https://dev.azuresynapse.net/.default", "X") == "Synapse"
    assert audience_for_scope("https://vault.azure.net/.default", "X") == "Vault"
