"""Synapse pool configuration and batch jobs: real azure-synapse-spark SDK against the Livy double,
real local Spark drivers started the way Synapse starts them, real MLflow against the emulator."""

from __future__ import annotations

import json
import re
import textwrap
import uuid

import pytest
from mlflow.tracking import MlflowClient

from spark_aml_bridge.cli import main
from spark_aml_bridge.config import SETTINGS_BY_NAME
from spark_aml_bridge.emulator.synapse.livy import LivyDouble, local_runner
from spark_aml_bridge.emulator.synapse.runtime import SynapseRuntime
from spark_aml_bridge.errors import BridgeError, ConfigError
from spark_aml_bridge.platforms.synapse.jobs import submit_batch
from spark_aml_bridge.platforms.synapse.pool_config import (
    config_from_settings,
    synapse_pool_configuration,
)

JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")
ARM_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ml"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-ml"
)
KEY_VAULT_SETTINGS = {
    "credential": "key-vault-sp",
    "tenant_id": "00000000-0000-0000-0000-0000000000aa",
    "client_id": "00000000-0000-0000-0000-0000000000bb",
    "key_vault_linked_service": "ls_kv",
    "client_secret_name": "aml-sp-secret",
}


def test_pool_configuration_is_generated_from_the_settings_table():
    config = config_from_settings(
        {"workspace": ARM_ID, "region": "westeurope", **KEY_VAULT_SETTINGS}
    )
    pool = synapse_pool_configuration(config)
    uri = pool.tracking_uri
    assert uri.startswith("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/")
    conf = pool.spark_conf
    # Non-secret settings under their table keys, for the driver.
    for name, value in KEY_VAULT_SETTINGS.items():
        assert conf[SETTINGS_BY_NAME[name].conf_key] == value
    assert conf["spark.aml.bridge.workspace"] == uri
    # The zero-code trigger on the driver (YARN application master) and the executors.
    assert conf["spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI"] == uri
    assert conf["spark.executorEnv.MLFLOW_TRACKING_URI"] == uri
    assert conf["spark.executorEnv.SPARK_AML_BRIDGE_WORKSPACE"] == uri
    assert conf["spark.executorEnv.SPARK_AML_BRIDGE_TENANT_ID"] == KEY_VAULT_SETTINGS["tenant_id"]
    # Driver-only settings and sources stay off the executors (they use the relayed token).
    assert "spark.executorEnv.SPARK_AML_BRIDGE_CREDENTIAL" not in conf
    assert "spark.executorEnv.SPARK_AML_BRIDGE_CLIENT_SECRET_NAME" not in conf
    assert conf["spark.executorEnv._SPARK_AML_BRIDGE_PLATFORM"] == "synapse"
    assert pool.requirements[0].startswith("spark-aml-bridge==")

    lines = pool.render("conf").splitlines()
    assert dict(line.split(" ", 1) for line in lines) == conf
    assert json.loads(pool.render("json"))["conf"] == conf
    configure = pool.render("configure")
    assert configure.startswith("%%configure") and json.loads(configure.split("\n", 1)[1])
    text = pool.render("text")
    assert "requirements.txt" in text and "spark.aml.bridge.keyVaultLinkedService ls_kv" in text


def test_pool_configuration_refuses_secrets_without_echoing_them(monkeypatch):
    monkeypatch.setenv("SPARK_AML_BRIDGE_CLIENT_SECRET", "s3cr3t-value")
    config = config_from_settings({"workspace": ARM_ID, "region": "westeurope"})
    with pytest.raises(ConfigError) as info:
        synapse_pool_configuration(config)
    assert "client_secret" in str(info.value) and "Key Vault" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_pool_configuration_needs_the_workspace_host():
    with pytest.raises(ConfigError, match="--region"):
        synapse_pool_configuration(config_from_settings({"workspace": ARM_ID}))


def test_init_script_synapse_prints_the_pool_configuration(capsys, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cr3t-value")
    args = ["init-script", "synapse", "--workspace", ARM_ID, "--region", "westeurope"]
    for name, value in KEY_VAULT_SETTINGS.items():
        args += ["--" + name.replace("_", "-"), value]
    assert main([*args, "--format", "conf"]) == 0
    out = capsys.readouterr().out
    assert "spark.aml.bridge.clientSecretName aml-sp-secret" in out
    assert "spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI azureml://" in out
    assert "s3cr3t-value" not in out and not JWT.search(out)
    assert main([*args, "--package", "spark-aml-bridge==9.9"]) == 0
    assert "\nspark-aml-bridge==9.9\n" in capsys.readouterr().out


BATCH_SCRIPT = textwrap.dedent(
    """
    # A user's batch job: plain PySpark and MLflow, no spark_aml_bridge import.
    import os
    import sys

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("synapse-batch").getOrCreate()
    import mlflow

    mlflow.set_experiment(sys.argv[1])
    with mlflow.start_run() as run:
        mlflow.log_param("rows", spark.range(10).count())
        mlflow.log_metric("score", 0.5)
    seen = (
        spark.range(2, numPartitions=2)
        .rdd.map(lambda _: os.environ.get("MLFLOW_TRACKING_URI", ""))
        .collect()
    )
    bridge_sessions = sys.modules["spark_aml_bridge.session"].sessions()
    print("RUN_ID", run.info.run_id)
    print("EXECUTOR_URIS", sorted(set(seen)))
    print("CREDENTIAL", [s.credential.source for s in bridge_sessions])
    spark.stop()
    """
)


def test_batch_job_carries_the_settings_and_tracks_with_no_code(emulator, tmp_path, monkeypatch):
    info = emulator.info
    # The submitter: a service principal on a laptop or CI (emulator env), for the Synapse API.
    for name, value in info["env"].items():
        monkeypatch.setenv(name, value)
    runtime = SynapseRuntime(info, tmp_path / "runtime", session="batch")
    script = tmp_path / "train.py"
    script.write_text(BATCH_SCRIPT)
    experiment = f"synapse-batch-{uuid.uuid4().hex[:8]}"
    with LivyDouble(info, tmp_path / "livy", runner=local_runner(runtime, timeout=300)) as livy:
        batch = submit_batch(
            str(script),
            pool="pool1",
            endpoint=livy.endpoint,
            name="train",
            arguments=[experiment],
            settings={"workspace": info["tracking_uri"]},
            ca_bundle=livy.ca_bundle,
            wait=True,
            poll_interval=1,
            timeout=300,
        )
        recorded = livy.requests
    log = "\n".join(batch.log)
    assert batch.state == "success", log[-3000:]
    run_id = re.search(r"^RUN_ID ([\w-]+)$", log, re.M).group(1)
    assert f"EXECUTOR_URIS ['{info['tracking_uri']}']" in log
    assert "CREDENTIAL ['notebookutils']" in log  # the workspace managed identity of the job

    create = recorded[0]
    assert create["method"] == "POST"
    assert create["path"] == "/livyApi/versions/2019-11-01-preview/sparkPools/pool1/batches"
    body = create["body"]
    assert body["name"] == "train" and body["file"] == str(script)
    assert body["args"] == [experiment]
    conf = body["conf"]
    assert conf["spark.aml.bridge.workspace"] == info["tracking_uri"]
    assert conf["spark.aml.bridge.caBundle"] == info["ca_bundle"]
    assert conf["spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI"] == info["tracking_uri"]
    payloads = json.dumps(recorded)
    assert info["client_secret"] not in payloads and not JWT.search(payloads)
    assert info["client_secret"] not in log and not JWT.search(log)

    client = MlflowClient(tracking_uri=info["tracking_uri"])
    from spark_aml_bridge import connect

    connect()  # this process reads the result with its own service principal
    run = client.get_run(run_id)
    assert run.data.params == {"rows": "10"} and run.data.metrics == {"score": 0.5}
    tags = run.data.tags
    assert tags["spark_aml_bridge.platform"] == "synapse"
    assert tags["spark_aml_bridge.role"] == "driver"
    assert tags["spark_aml_bridge.session"] == "batch"
    assert tags["spark_aml_bridge.synapse_pool"] == "pool1"
    assert tags["spark_aml_bridge.spark_app_id"].startswith("local-")


class _ArmTokens:
    """A credential that answers every scope with an ARM token (the wrong audience for Livy)."""

    def __init__(self, inner):
        self.inner = inner

    def get_token(self, *scopes, **kwargs):
        return self.inner.get_token("https://management.azure.com/.default")


def test_submit_synapse_cli_and_livy_refusals(emulator, tmp_path, monkeypatch, capsys):
    from azure.identity import ClientSecretCredential

    info = emulator.info
    for name, value in info["env"].items():
        monkeypatch.setenv(name, value)
    with LivyDouble(info, tmp_path / "livy") as livy:
        common = ["submit", "synapse", "--endpoint", livy.endpoint, "--synapse-ca-bundle"]
        common += [livy.ca_bundle, "--file", "abfss://jobs@lake.dfs.core.windows.net/train.py"]
        settings = ["--key-vault-linked-service", "ls_kv", "--client-secret-name", "sp-secret"]
        assert main([*common, "--pool", "pool1", "--arg", "a1", *settings]) == 0
        assert "batch 0 'train.py' on pool pool1: not_started" in capsys.readouterr().out
        conf = livy.requests[-1]["body"]["conf"]
        assert conf["spark.aml.bridge.keyVaultLinkedService"] == "ls_kv"

        assert main([*common, "--pool", "nopool"]) == 2
        err = capsys.readouterr().err
        assert "has no Spark pool 'nopool'" in err and "Fix:" in err

        credential = ClientSecretCredential(
            info["tenant_id"],
            info["client_id"],
            info["client_secret"],
            authority=info["authority"],
            disable_instance_discovery=True,
            connection_verify=info["ca_bundle"],
        )
        with pytest.raises(BridgeError, match="did not accept the credential") as refused:
            submit_batch(
                "abfss://jobs@lake.dfs.core.windows.net/train.py",
                pool="pool1",
                endpoint=livy.endpoint,
                credential=_ArmTokens(credential),
                ca_bundle=livy.ca_bundle,
            )
        assert "audience" in str(refused.value)
        with pytest.raises(ConfigError, match="secret"):
            submit_batch(
                "x.py",
                pool="pool1",
                endpoint=livy.endpoint,
                conf={"spark.executorEnv.AZURE_CLIENT_SECRET": "s3cr3t-value"},
                ca_bundle=livy.ca_bundle,
            )
        assert len(livy.batches) == 1
