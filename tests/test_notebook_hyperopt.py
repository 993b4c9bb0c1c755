"""The Hyperopt SparkTrials notebook, executed by a real Jupyter kernel with a local Spark session
against the emulator; the parent + child runs are then read by a separate, plain MLflow client."""

from __future__ import annotations

import ast
import os
import sys
import uuid
from pathlib import Path

import mlflow
import nbformat
from nbclient import NotebookClient
from sklearn.datasets import load_breast_cancer
from test_executors_at_scale import _read_back
from test_notebook_xgboost import _inject_parameters, _kernel_manager, _outputs

import spark_aml_bridge

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "hyperopt_spark_trials.ipynb"
MAX_EVALS = 8


def test_only_connect_and_task_run_are_workspace_specific():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    lines = [
        line.strip()
        for cell in nb.cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if "spark_aml_bridge" in line or "azureml" in line.lower()
    ]
    assert lines == [
        "import spark_aml_bridge",
        "print(spark_aml_bridge.connect())",
        "import spark_aml_bridge",
        'with spark_aml_bridge.task_run(run_name="trial") as run:',
    ]
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


def test_spark_trials_notebook_records_parent_and_one_child_run_per_trial(use_emulator, tmp_path):
    emulator = use_emulator
    nb = nbformat.read(NOTEBOOK, as_version=4)
    experiment = f"hyperopt-notebook-{uuid.uuid4().hex[:8]}"
    _inject_parameters(
        nb,
        experiment_name=experiment,
        spark_master="local[2]",
        spark_conf={
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
        },
        max_evals=MAX_EVALS,
        parallelism=4,
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AZURE_", "SPARK_AML_BRIDGE_", "MLFLOW_TRACKING_", "PYSPARK_"))
        and name not in ("MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    }
    env.update(emulator.info["env"])
    env.update(
        {
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "IPYTHONDIR": str(tmp_path / "ipython"),
        }
    )
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=480,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env, cleanup_kc=True)

    texts = [_outputs(cell) for cell in nb.cells if cell.cell_type == "code"]
    everything = "\n".join(texts)
    assert "Traceback" not in everything
    assert emulator.info["client_secret"] not in everything
    printed = [line for line in texts[-1].splitlines() if line.startswith("{'parent_run_id'")]
    summary = ast.literal_eval(printed[-1])
    assert summary["trials"] == MAX_EVALS and summary["reloaded_predictions"] == 143

    read = _read_back(emulator, summary["parent_run_id"], "val_auc")
    parent, children = read["parent"], read["children"]
    assert parent["status"] == "FINISHED"
    assert parent["tags"]["best_run_id"] == summary["best_run_id"]
    assert round(parent["metrics"]["best_val_auc"], 6) == summary["best_val_auc"]
    assert {"best_C", "best_penalty"} <= set(parent["params"])
    # One child run per trial, each with its parameters, metric and model, made on executors.
    assert len(children) == MAX_EVALS
    for child in children.values():
        assert child["status"] == "FINISHED"
        assert set(child["params"]) == {"C", "penalty"}
        assert len(child["histories"]["val_auc"]) == 1
        assert child["tags"]["spark_aml_bridge.role"] == "executor"
    best = children[summary["best_run_id"]]
    assert best["metrics"]["val_auc"] == max(c["metrics"]["val_auc"] for c in children.values())
    assert round(best["metrics"]["val_auc"], 6) == summary["best_val_auc"]
    assert parent["params"]["best_penalty"] == best["params"]["penalty"]
    # Every trial's model, logged from an executor, loads (through the bridge) and predicts.
    spark_aml_bridge.connect()
    rows = load_breast_cancer(return_X_y=True, as_frame=True)[0].head(3)
    for run_id in children:
        assert len(mlflow.sklearn.load_model(f"runs:/{run_id}/model").predict(rows)) == 3
