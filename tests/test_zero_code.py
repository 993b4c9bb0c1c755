"""Zero code: only MLFLOW_TRACKING_URI=azureml://… and the bridge's env; no import in user code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

import spark_aml_bridge

SCRIPT = textwrap.dedent(
    """
    import mlflow  # no import of spark_aml_bridge: MLflow loads it through its entry points
    mlflow.set_experiment("zero-code")
    with mlflow.start_run() as run:
        mlflow.log_param("p", "v")
        mlflow.log_metric("m", 3.0)
    print(run.info.run_id)
    """
)


def test_plain_mlflow_process_tracks_to_the_workspace(use_emulator):
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = use_emulator.info["tracking_uri"]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.strip().splitlines()[-1]
    assert use_emulator.info["client_secret"] not in result.stderr + result.stdout

    spark_aml_bridge.connect()
    run = MlflowClient().get_run(run_id)
    assert run.data.params == {"p": "v"} and run.data.metrics == {"m": 3.0}
    assert run.data.tags["spark_aml_bridge.platform"] == "generic"


def test_plain_mlflow_process_gets_a_clear_error_without_credentials(emulator):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["MLFLOW_TRACKING_URI"] = emulator.info["tracking_uri"]
    env["SPARK_AML_BRIDGE_CA_BUNDLE"] = emulator.info["ca_bundle"]
    env["PATH"] = os.path.dirname(sys.executable)  # no `az` on PATH
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode != 0
    assert "no credential is available" in result.stderr
    assert "AZURE_CLIENT_SECRET" in result.stderr
