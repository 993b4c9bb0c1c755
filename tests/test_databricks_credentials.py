"""Databricks credential sources against the emulator's token endpoint, through connect()."""

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
from spark_aml_bridge.errors import CredentialError, WorkspaceUnreachableError
from spark_aml_bridge.platforms.databricks.credentials import _set_at_launch

JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")
SCOPE = "aml"


def _scope(info: dict) -> dict:
    """A secret scope holding the service principal, as a platform engineer would create it."""
    return {
        SCOPE: {
            "sp-secret": info["client_secret"],
            "sp-tenant": info["tenant_id"],
            "sp-client": info["client_id"],
        }
    }


SCOPE_SETTINGS = {
    "credential": "databricks-secret-scope",
    "databricks_secret_scope": SCOPE,
    "databricks_secret_key": "sp-secret",
    "databricks_tenant_id_key": "sp-tenant",
    "databricks_client_id_key": "sp-client",
}


def _log_a_run(prefix: str) -> str:
    mlflow.set_experiment(f"{prefix}-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        mlflow.log_param("p", 1)
        mlflow.log_metric("m", 0.5)
    return run.info.run_id


def test_secret_scope_service_principal(emulator, databricks_runtime, caplog):
    info = emulator.info
    double = databricks_runtime(secrets=_scope(info))
    caplog.set_level(logging.DEBUG)
    bridge = spark_aml_bridge.connect(
        **{k: v for k, v in SCOPE_SETTINGS.items() if k != "credential"}
    )
    assert bridge.session.credential.source == "databricks-secret-scope"  # first in the chain
    assert "app " + info["client_id"][:8] in bridge.identity
    assert bridge.platform.platform == "databricks" and bridge.platform.role == "driver"
    run = MlflowClient().get_run(_log_a_run("scope"))
    tags = run.data.tags
    assert tags["spark_aml_bridge.platform"] == "databricks"
    assert tags["mlflow.databricks.notebookPath"] == double.spec["notebook_path"]
    assert tags["mlflow.databricks.workspaceID"] == double.spec["org_id"]
    assert tags["mlflow.user"] == double.spec["user"]
    # The secret is nowhere a person or a log would see it.
    secret = info["client_secret"]
    texts = [repr(bridge), str(bridge.session.config), repr(bridge.session.credential)]
    texts += [caplog.text, json.dumps(bridge.platform.details)]
    assert not any(secret in text for text in texts)


@pytest.mark.parametrize(
    ("spec", "settings", "expected", "fix"),
    [
        (
            {"secrets": {SCOPE: {}}},
            {"databricks_secret_key": "nope"},
            "scope 'aml' has no key 'nope'",
            "databricks secrets put-secret aml nope",
        ),
        (
            {"secrets": {}},
            {},
            "scope 'aml' does not exist",
            "databricks secrets create-scope aml",
        ),
        (
            {"secrets": {SCOPE: {"sp-secret": "x"}}, "denied_scopes": [SCOPE]},
            {},
            "may not read Databricks secret scope 'aml'",
            "databricks secrets put-acl aml",
        ),
    ],
    ids=["missing-key", "missing-scope", "no-permission"],
)
def test_secret_scope_errors_name_scope_key_and_fix(
    databricks_runtime, spec, settings, expected, fix
):
    databricks_runtime(**spec)
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect(
            databricks_secret_scope=SCOPE, tenant_id="t", client_id="c", **settings
        )
    assert expected in info.value.problem and fix in info.value.fix


def test_cluster_env_service_principal_and_unresolved_reference(
    emulator, databricks_runtime, monkeypatch
):
    info = emulator.info
    databricks_runtime()
    monkeypatch.setenv("AZURE_TENANT_ID", info["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", info["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "{{secrets/aml/sp-secret}}")
    with pytest.raises(CredentialError) as error:
        spark_aml_bridge.connect()
    assert "literal secret reference {{secrets/aml/sp-secret}}" in error.value.problem
    assert "restart the cluster" in error.value.fix
    monkeypatch.setenv("AZURE_CLIENT_SECRET", info["client_secret"])
    bridge = spark_aml_bridge.connect()
    assert bridge.session.credential.source == "databricks-env"
    # Set by code in this process, not by the cluster: executors would not have it.
    assert not bridge.session.credential.executor_reusable
    assert MlflowClient().get_run(_log_a_run("env")).data.metrics == {"m": 0.5}


def test_env_set_at_cluster_start_is_reusable_on_executors():
    names = ("AZURE_CLIENT_ID",)
    env = {"AZURE_CLIENT_ID": "a"}
    assert _set_at_launch(env, names, lambda: {"AZURE_CLIENT_ID": "a"})
    assert not _set_at_launch(env, names, lambda: {})
    assert not _set_at_launch(env, names, lambda: None)


def test_unity_catalog_service_credential(emulator, databricks_runtime):
    info = emulator.info
    databricks_runtime(service_credentials=("aml-connector",))
    bridge = spark_aml_bridge.connect(databricks_service_credential="aml-connector")
    assert bridge.session.credential.source == "databricks-service-credential"
    assert bridge.session.credential.executor_reusable
    # The access connector's managed identity, not the service principal.
    assert "app " + info["managed_identity_client_id"][:8] in bridge.identity
    assert MlflowClient().get_run(_log_a_run("uc")).data.params == {"p": "1"}


@pytest.mark.parametrize(
    ("name", "fix"),
    [("denied", "GRANT ACCESS ON SERVICE CREDENTIAL `denied`"), ("unknown", "SHOW SERVICE")],
)
def test_service_credential_errors(databricks_runtime, name, fix):
    databricks_runtime(service_credentials=("denied",), denied_service_credentials=["denied"])
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect(credential=f"databricks-service-credential:{name}")
    assert f"service credential '{name}'" in info.value.problem and fix in info.value.fix


def test_no_credential_lists_the_databricks_sources(databricks_runtime):
    databricks_runtime()
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    text = info.value.problem
    for name in ("databricks-secret-scope", "databricks-service-credential", "databricks-env"):
        assert name in text
    assert text.index("databricks-secret-scope") < text.index("databricks-env")


@pytest.mark.parametrize("source", ["databricks-passthrough", "databricks-service-credential"])
def test_tokens_refresh_across_lifetimes(short_token_emulator, databricks_runtime, source):
    """Short-lived tokens (4 s): refreshed before expiry, never one per call, never a 401."""
    databricks_runtime(workspace_emulator=short_token_emulator, passthrough=True)
    bridge = spark_aml_bridge.connect(
        credential=source, databricks_service_credential="aml-connector"
    )
    assert bridge.session.credential.source == source
    token = bridge.session.tokens.access_token()
    assert token.expires_on - time.time() <= short_token_emulator.info["token_lifetime"] + 1
    mlflow.set_experiment(f"refresh-{uuid.uuid4().hex[:8]}")
    short_token_emulator.reset_stats()
    started, calls = time.time(), 0
    with mlflow.start_run():
        while time.time() - started < 10:
            mlflow.log_metric("m", calls, step=calls)
            calls += 1
    stats = short_token_emulator.stats()
    assert stats["auth_failures"] == 0
    assert 2 <= bridge.session.tokens.requests < calls / 5


def test_wrong_workspace_is_named(emulator, databricks_runtime, monkeypatch):
    info = emulator.info
    databricks_runtime(secrets=_scope(info))
    wrong = info["tracking_uri"].rsplit("/", 1)[0] + "/no-such-workspace"
    with pytest.raises(WorkspaceUnreachableError) as error:
        spark_aml_bridge.connect(wrong, **SCOPE_SETTINGS)
    assert "no-such-workspace" in error.value.problem


def _runs_from_executors(experiment_id: str):
    def log(batches):
        import mlflow
        import pandas as pd

        for frame in batches:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_metric("rows", len(frame))
            yield pd.DataFrame({"run_id": [run.info.run_id]})

    return log


@pytest.mark.parametrize(
    ("settings", "relayed"),
    [
        ({"databricks_service_credential": "aml-connector"}, False),
        (SCOPE_SETTINGS, True),
    ],
    ids=["service-credential", "secret-scope"],
)
def test_executors_log_and_no_secret_reaches_spark(
    emulator, databricks_runtime, spark, settings, relayed
):
    info = emulator.info
    double = databricks_runtime(spark=spark, secrets=_scope(info))
    bridge = spark_aml_bridge.connect(**settings)
    assert bridge.executors_linked
    environment = spark.sparkContext.environment
    assert "_SPARK_AML_BRIDGE_EXECUTOR_TOKEN" not in environment
    handle = json.loads(environment["_SPARK_AML_BRIDGE_DRIVER"])
    assert handle["tokens"] is relayed
    experiment_id = mlflow.set_experiment(f"dbx-exec-{uuid.uuid4().hex[:8]}").experiment_id
    rows = (
        spark.range(0, 10, numPartitions=2)
        .mapInPandas(_runs_from_executors(experiment_id), "run_id string")
        .collect()
    )
    client = MlflowClient()
    runs = [client.get_run(r.run_id) for r in rows]
    assert sorted(r.data.metrics["rows"] for r in runs) == [5, 5]
    for run in runs:
        assert run.data.tags["spark_aml_bridge.role"] == "executor"
        assert run.data.tags["mlflow.databricks.cluster.id"] == double.spec["cluster_id"]
    # The service credential's executors use their own identity; the secret scope's ask the
    # driver for tokens (its secret never leaves the driver).
    served = bridge._executors.stats()["token_requests"]
    assert served >= 1 if relayed else served == 0
    secret = info["client_secret"]
    conf_text = json.dumps(spark.sparkContext.getConf().getAll())
    conf_text += json.dumps({k: spark.conf.get(k, None) for k in double.spark_conf()})
    assert secret not in conf_text and not JWT.search(conf_text)
    app_id = spark.sparkContext.applicationId
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app_id}/environment"
    with urllib.request.urlopen(url, timeout=30) as response:  # the local Spark UI
        ui_text = response.read().decode()
    assert "spark.app.name" in ui_text
    assert secret not in ui_text and not JWT.search(ui_text)


def test_serverless_with_executor_logging_requested_warns_and_tracks_the_driver(
    emulator, databricks_runtime
):
    databricks_runtime(compute="serverless", secrets=_scope(emulator.info))
    with pytest.warns(UserWarning, match="serverless"):
        bridge = spark_aml_bridge.connect(executors=True, **SCOPE_SETTINGS)
    assert not bridge.executors_linked
    assert bridge.platform.details["compute"] == "serverless"
    assert MlflowClient().get_run(_log_a_run("serverless")).data.metrics == {"m": 0.5}
