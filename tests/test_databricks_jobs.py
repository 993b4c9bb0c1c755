"""One-time Databricks runs through the real databricks-sdk, against the emulator's Jobs API double;
and the `databricks` tracking URI against its MLflow double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.errors import BridgeError, ConfigError
from spark_aml_bridge.platforms import detect_platform
from spark_aml_bridge.platforms.databricks.jobs import submit_databricks_run

REF = "{{secrets/aml/sp-secret}}"


@pytest.fixture
def databricks_env(emulator, monkeypatch):
    """How a user points the Databricks SDK/CLI at a workspace: host and token in env."""
    monkeypatch.setenv("DATABRICKS_HOST", emulator.info["databricks_host"])
    monkeypatch.setenv("DATABRICKS_TOKEN", emulator.info["databricks_token"])
    return emulator.info


def _submissions(info: dict) -> list[dict]:
    response = requests.get(
        info["databricks_host"] + "/_double/jobs/submissions",
        headers={"Authorization": f"Bearer {info['databricks_token']}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def test_python_file_on_a_new_cluster_carries_the_settings(emulator, databricks_env):
    info = emulator.info
    run = submit_databricks_run(
        "python",
        "/Workspace/Users/me/train.py",
        parameters=["--epochs", "3"],
        settings={
            "workspace": info["tracking_uri"],
            "credential": "databricks-env",
            "tenant_id": info["tenant_id"],
            "client_id": info["client_id"],
        },
        client_secret_ref=REF,
        spark_version="15.4.x-scala2.12",
        node_type_id="Standard_DS3_v2",
        num_workers=2,
        wait=True,
    )
    assert run.state == "SUCCESS" and run.run_page_url.startswith(info["databricks_host"])
    sent = next(s for s in _submissions(info) if s["run_id"] == run.run_id)
    task = sent["body"]["tasks"][0]
    assert task["spark_python_task"] == {
        "python_file": "/Workspace/Users/me/train.py",
        "parameters": ["--epochs", "3"],
    }
    cluster = task["new_cluster"]
    assert cluster["spark_version"] == "15.4.x-scala2.12" and cluster["num_workers"] == 2
    env = cluster["spark_env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == info["tracking_uri"]
    assert env["SPARK_AML_BRIDGE_CREDENTIAL"] == "databricks-env"
    assert env["AZURE_TENANT_ID"] == info["tenant_id"]
    assert env["AZURE_CLIENT_SECRET"] == REF  # a reference, resolved by Databricks
    assert task["libraries"] == [
        {"pypi": {"package": f"spark-aml-bridge=={spark_aml_bridge.__version__}"}}
    ]
    assert info["client_secret"] not in sent["raw"]
    assert "databricks-sdk" in sent["headers"].get("User-Agent", "")


def test_cli_notebook_and_wheel_tasks(emulator, databricks_env):
    info = emulator.info
    env = dict(os.environ)
    env["SPARK_AML_BRIDGE_CLIENT_SECRET"] = info["client_secret"]  # never travels
    base = [sys.executable, "-m", "spark_aml_bridge.cli", "submit", "databricks"]
    settings = ["--workspace", info["tracking_uri"], "--databricks-secret-scope", "aml"]
    notebook = subprocess.run(
        [*base, "--notebook", "/Users/me/train", "--parameter", "alpha=0.5"]
        + ["--existing-cluster-id", "0611-101530-abc", *settings],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert notebook.returncode == 0, notebook.stderr
    assert "submitted Databricks run" in notebook.stdout
    assert "keeps its own environment" in notebook.stderr  # an existing cluster: init script
    wheel = subprocess.run(
        [*base, "--wheel-package", "trainer", "--entry-point", "main"]
        + ["--spark-version", "15.4.x-scala2.12", "--num-workers", "1"]
        + ["--init-script", "/Volumes/main/default/init/spark-aml-bridge.sh", *settings],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert wheel.returncode == 0, wheel.stderr
    sent = _submissions(info)[-2:]
    assert all(info["client_secret"] not in s["raw"] for s in sent)
    nb_task, wheel_task = (s["body"]["tasks"][0] for s in sent)
    assert nb_task["notebook_task"] == {
        "notebook_path": "/Users/me/train",
        "base_parameters": {"alpha": "0.5"},
    }
    assert nb_task["existing_cluster_id"] == "0611-101530-abc" and "new_cluster" not in nb_task
    assert wheel_task["python_wheel_task"] == {"package_name": "trainer", "entry_point": "main"}
    cluster = wheel_task["new_cluster"]
    assert cluster["init_scripts"] == [
        {"volumes": {"destination": "/Volumes/main/default/init/spark-aml-bridge.sh"}}
    ]
    assert cluster["spark_env_vars"]["SPARK_AML_BRIDGE_DATABRICKS_SECRET_SCOPE"] == "aml"
    assert "libraries" not in wheel_task  # the init script installs the package


def test_secret_values_are_refused(emulator, databricks_env):
    with pytest.raises(ConfigError, match="is a secret"):
        submit_databricks_run(
            "python",
            "/Workspace/x.py",
            settings={
                "workspace": emulator.info["tracking_uri"],
                "client_secret": emulator.info["client_secret"],
            },
            spark_version="15.4.x-scala2.12",
        )
    with pytest.raises(ConfigError, match="client-secret-ref"):
        submit_databricks_run(
            "python",
            "/Workspace/x.py",
            settings={"workspace": emulator.info["tracking_uri"], "credential": "databricks-env"},
            spark_version="15.4.x-scala2.12",
        )


def test_wrong_databricks_workspace_is_named(emulator, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", emulator.info["databricks_host"])
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-the-token")
    with pytest.raises(BridgeError) as info:
        submit_databricks_run(
            "python",
            "/Workspace/x.py",
            settings={"workspace": emulator.info["tracking_uri"]},
            spark_version="15.4.x-scala2.12",
        )
    assert emulator.info["databricks_host"] in info.value.problem


def test_the_jobs_double_rejects_what_databricks_rejects(emulator, databricks_env):
    headers = {"Authorization": f"Bearer {emulator.info['databricks_token']}"}
    url = emulator.info["databricks_host"] + "/api/2.2/jobs/runs/submit"
    bad = {"tasks": [{"task_key": "t", "spark_python_task": {"python_file": "x.py"}}]}
    response = requests.post(url, json=bad, headers=headers, timeout=30)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_native_databricks_tracking_and_connect_moves_to_the_workspace(
    emulator, databricks_runtime, monkeypatch
):
    """`databricks` is the platform's own tracking (here the MLflow double, with PAT auth);
    connect() (mode workspace) sends new runs to the workspace only."""
    info = emulator.info
    double = databricks_runtime(
        secrets={"aml": {"azure-client-secret": info["client_secret"]}},
    )
    assert os.environ["DATABRICKS_HOST"] == info["databricks_host"]
    native = detect_platform().native_tracking_uri()
    assert native == "databricks"
    name = f"/Users/{double.spec['user']}/native-{uuid.uuid4().hex[:8]}"
    databricks = MlflowClient(native)
    experiment_id = databricks.create_experiment(name)
    databricks.log_metric(databricks.create_run(experiment_id).info.run_id, "m", 1.0)
    assert len(databricks.search_runs([experiment_id])) == 1

    bridge = spark_aml_bridge.connect(
        databricks_secret_scope="aml", tenant_id=info["tenant_id"], client_id=info["client_id"]
    )
    assert bridge.mode == "workspace" and mlflow.get_tracking_uri() == bridge.tracking_uri
    mlflow.set_experiment(name)
    with mlflow.start_run():
        mlflow.log_metric("m", 2.0)
    assert len(databricks.search_runs([experiment_id])) == 1  # nothing new on the native side
    in_workspace = mlflow.search_runs(experiment_names=[name])
    assert list(in_workspace["metrics.m"]) == [2.0]
    probes = requests.get(
        info["databricks_host"] + "/_double/stats",
        headers={"Authorization": f"Bearer {info['databricks_token']}"},
        timeout=30,
    ).json()["well_known_probes"]
    assert probes >= 1
    assert json.dumps(bridge.platform.details).count(info["client_secret"]) == 0
