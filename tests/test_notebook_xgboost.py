"""The XGBoost-on-Spark notebook, executed by a real Jupyter kernel (this venv's Python) with a
local Spark session, against the emulator; then what landed in the workspace is checked."""

from __future__ import annotations

import ast
import json
import os
import sys
import uuid
from pathlib import Path

import mlflow
import nbformat
import numpy as np
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

import spark_aml_bridge

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "xgboost_spark_tracking.ipynb"
MLFLOW_3 = int(mlflow.__version__.split(".")[0]) >= 3
KERNEL = "spark-aml-bridge-test"
PNG = b"\x89PNG\r\n\x1a\n"


def _kernel_manager(directory: Path) -> KernelManager:
    """A kernel running this venv's Python, from a kernelspec of our own (nothing global)."""
    spec = directory / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "spark_aml_bridge tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(directory / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _inject_parameters(nb, **parameters) -> None:
    """What papermill does: a cell after the one tagged `parameters` overrides its values."""
    index = next(
        i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell["id"] = "injected-parameters"
    nb.cells.insert(index + 1, cell)


def _outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def _test_split():
    """The notebook's data and split, rebuilt here without Spark."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    features, labels = frame.drop(columns="target"), frame["target"]
    _, x_test, _, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=42, stratify=labels
    )
    return x_test, y_test


def test_only_connect_is_workspace_specific():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    lines = [
        line.strip()
        for cell in nb.cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if "spark_aml_bridge" in line or "azureml" in line.lower()
    ]
    assert lines == ["import spark_aml_bridge", "print(spark_aml_bridge.connect())"]
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


@pytest.fixture
def executed(emulator, tmp_path):
    """The notebook after a run in a fresh kernel with the emulator's environment."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    experiment = f"xgboost-notebook-{uuid.uuid4().hex[:8]}"
    _inject_parameters(
        nb,
        experiment_name=experiment,
        data_dir=str(tmp_path / "data"),
        spark_master="local[2]",
        spark_conf={
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
        },
        n_estimators=40,
    )
    # What a user exports from emulator.json; nothing else about Azure or MLflow.
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
            "IPYTHONDIR": str(tmp_path / "ipython"),  # no user profile or startup files
        }
    )
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # cleanup_kc: shut the kernel (and its Spark JVM) down now, though we made its manager.
    client.execute(env=env, cleanup_kc=True)
    return nb, experiment


def test_xgboost_notebook_tracks_to_the_workspace(executed, use_emulator, tmp_path):
    nb, experiment = executed
    texts = [_outputs(cell) for cell in nb.cells if cell.cell_type == "code"]
    everything = "\n".join(texts)
    assert "Traceback" not in everything
    assert "error during xgboost autologging" not in everything  # autolog fully worked
    assert use_emulator.info["client_secret"] not in everything
    printed = [line for line in texts[-1].splitlines() if line.startswith("{'run_id'")]
    summary = ast.literal_eval(printed[-1])
    assert summary["mlflow"] == mlflow.__version__

    spark_aml_bridge.connect()
    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == experiment
    assert run.info.status == "FINISHED"

    # Autologging: the booster's parameters and a metric per boosting round on both eval sets.
    params = run.data.params
    assert params["objective"] == "binary:logistic" and params["max_depth"] == "3"
    assert params["num_boost_round"] == "40"
    metrics = run.data.metrics
    assert {"train-logloss", "train-auc", "test-logloss", "test-auc"} <= set(metrics)
    history = client.get_metric_history(run.info.run_id, "test-logloss")
    assert [m.step for m in history] == list(range(40))
    assert history[-1].value < history[0].value
    # The notebook's own metrics, as it printed them.
    for name in ("test_accuracy", "test_f1", "test_roc_auc"):
        assert round(metrics[name], 4) == summary[name]
    assert metrics["test_roc_auc"] == pytest.approx(metrics["test-auc"])

    # The confusion matrix and autolog's feature importances, as run artifacts.
    top = {f.path for f in client.list_artifacts(run.info.run_id)}
    # The model folder too, on MLflow 3 as on 2: where Azure ML studio and every client look.
    assert {"feature_importance_weight.json", "plots", "model"} <= top
    assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/confusion_matrix.png"
    ]
    image = client.download_artifacts(run.info.run_id, "plots/confusion_matrix.png", tmp_path)
    data = Path(image).read_bytes()
    assert data.startswith(PNG) and len(data) > 5000

    # The model: signature, input example, and the same scores from this process.
    model_uri = summary["model_uri"]
    if MLFLOW_3:
        assert model_uri.startswith("models:/m-")
        logged = mlflow.get_logged_model(model_uri.split("/", 1)[1])
        assert logged.source_run_id == run.info.run_id and logged.name == "model"
    else:
        assert model_uri == f"runs:/{run.info.run_id}/model"
    x_test, y_test = _test_split()
    for uri in (model_uri, f"runs:/{run.info.run_id}/model"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert loaded.metadata.signature.inputs.input_names() == list(x_test.columns)
        example = loaded.input_example
        assert example.shape == (5, 30)
        np.testing.assert_array_equal(example.to_numpy(), x_test.head(5).to_numpy())
        probability = np.asarray(loaded.predict(x_test))
        predicted = (probability > 0.5).astype(int)
        # Spark's CSV round trip kept every value: the scores match the notebook's exactly.
        assert accuracy_score(y_test, predicted) == metrics["test_accuracy"]
        assert f1_score(y_test, predicted) == metrics["test_f1"]
        assert roc_auc_score(y_test, probability) == metrics["test_roc_auc"]
