"""Azure ML serverless Spark, a platform of its own (added as one folder + one registry line):
detection ahead of Synapse, job context in run tags, executors, and the job's managed identity
tracking to the job's own workspace with no settings at all."""

from __future__ import annotations

import mlflow
import pytest
import requests

import spark_aml_bridge
from spark_aml_bridge.errors import CredentialError
from spark_aml_bridge.platforms import detect_platform
from spark_aml_bridge.platforms.aml_spark.shim import AmlSparkPlatform
from spark_aml_bridge.platforms.synapse.shim import SynapsePlatform
from spark_aml_bridge.platforms.synapse.signals import TRIDENT_CONTEXT_ENV

ARCADIA = {"AZURE_SERVICE": "Microsoft.ProjectArcadia"}
JOB = {"AZUREML_RUN_ID": "sparkjob-42", "AZUREML_ARM_PROJECT_NAME": "nightly-features"}


@pytest.fixture
def aml_job(tmp_path, monkeypatch):
    """This process as an Azure ML serverless Spark driver (the job's variables)."""

    def activate(info: dict | None = None) -> dict[str, str]:
        env = {**ARCADIA, **JOB, TRIDENT_CONTEXT_ENV: str(tmp_path / "absent")}
        if info is not None:
            env.update(
                AZUREML_ARM_SUBSCRIPTION=info["subscription_id"],
                AZUREML_ARM_RESOURCEGROUP=info["resource_group"],
                AZUREML_ARM_WORKSPACE_NAME=info["workspace_name"],
            )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    return activate


def test_detected_ahead_of_synapse_with_the_job_in_its_tags(aml_job):
    env = aml_job()
    assert detect_platform().name == "aml-spark"
    conf = {"spark.cluster.type": "synapse", "spark.app.id": "app-7"}
    driver = AmlSparkPlatform(env, conf, "driver")
    assert driver.detect() and not SynapsePlatform(env, conf, "driver").detect()
    tags = driver.context_tags()
    assert tags["spark_aml_bridge.platform"] == "aml-spark"
    assert tags["spark_aml_bridge.aml_run_id"] == "sparkjob-42"
    assert tags["spark_aml_bridge.aml_experiment"] == "nightly-features"
    assert tags["spark_aml_bridge.spark_app_id"] == "app-7"
    # Executors may lack the job's variables: the driver's shim leaves the platform and context.
    handed = driver.executor_env()
    executor = AmlSparkPlatform(handed, None, "executor")
    assert executor.detect() and not SynapsePlatform(handed, None, "executor").detect()
    assert executor.context().details == driver.context().details
    assert executor.context_tags()["spark_aml_bridge.role"] == "executor"


def test_no_identity_names_the_job_identities(aml_job, emulator, monkeypatch):
    aml_job()
    monkeypatch.setenv("SPARK_AML_BRIDGE_CA_BUNDLE", emulator.info["ca_bundle"])
    with pytest.raises(CredentialError) as error:
        spark_aml_bridge.connect(workspace=emulator.info["tracking_uri"])
    assert "aml-user-identity: this job does not run as a user" in error.value.problem
    assert "aml-managed-identity: this job announces no managed identity" in error.value.problem


def test_job_managed_identity_tracks_to_the_jobs_workspace(aml_job, emulator, monkeypatch):
    info = emulator.info
    aml_job(info)
    for name, value in info["env"].items():
        if name not in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("IDENTITY_ENDPOINT", info["managed_identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", info["managed_identity_header"])
    monkeypatch.setenv("DEFAULT_IDENTITY_CLIENT_ID", info["managed_identity_client_id"])

    bridge = spark_aml_bridge.connect()  # no workspace setting: the job's own, found through ARM
    assert bridge.session.platform.name == "aml-spark"
    assert bridge.session.credential.source == "aml-managed-identity"
    assert "app " + info["managed_identity_client_id"][:8] in bridge.identity
    with mlflow.start_run() as run:
        mlflow.log_param("rows", 1000)

    # Read back without the bridge: the managed identity's own token, plain REST.
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential(
        client_id=info["managed_identity_client_id"], connection_verify=info["ca_bundle"]
    ).get_token("https://management.azure.com/.default")
    response = requests.get(
        info["workspace_url"] + "/api/2.0/mlflow/runs/get",
        params={"run_id": run.info.run_id},
        headers={"Authorization": f"Bearer {token.token}"},
        verify=info["ca_bundle"],
        timeout=30,
    )
    response.raise_for_status()
    data = response.json()["run"]["data"]
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert {p["key"]: p["value"] for p in data["params"]} == {"rows": "1000"}
    assert tags["spark_aml_bridge.platform"] == "aml-spark"
    assert tags["spark_aml_bridge.aml_run_id"] == "sparkjob-42"
