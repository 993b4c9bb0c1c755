"""The Databricks service-principal notebook, executed by a real Jupyter kernel under the runtime
double (dbutils with the secret scope in the notebook namespace, as on Databricks)."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import nbformat
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

import spark_aml_bridge
from spark_aml_bridge.emulator.databricks.runtime import (
    SPEC_ENV,
    DatabricksRuntimeDouble,
    write_ipython_startup,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "databricks_service_principal.ipynb"


def test_service_principal_notebook_tracks_to_the_workspace(emulator, tmp_path):
    info = emulator.info
    double = DatabricksRuntimeDouble.from_emulator(
        info,
        tmp_path / "runtime",
        secrets={
            "aml": {
                "sp-secret": info["client_secret"],
                "sp-tenant": info["tenant_id"],
                "sp-client": info["client_id"],
            }
        },
    )
    double.write_spec()
    ipython_dir = tmp_path / "ipython"
    write_ipython_startup(ipython_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SPARK_AML"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        {
            SPEC_ENV: str(double.spec_path),
            "IPYTHONDIR": str(ipython_dir),
            # What the cluster (or a local developer) provides: no Azure env vars, no secret.
            "SPARK_AML_BRIDGE_WORKSPACE": info["tracking_uri"],
            "SPARK_AML_BRIDGE_CA_BUNDLE": info["ca_bundle"],
            "SPARK_AML_BRIDGE_AUTHORITY": info["authority"],
        }
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute(env=env)

    outputs = "".join(
        out.get("text", "") + str(out.get("data", {}))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "databricks (driver" in outputs and "best run" in outputs
    assert info["client_secret"] not in outputs

    spark_aml_bridge.connect(
        info["tracking_uri"],
        credential="service-principal",
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        authority=info["authority"],
        ca_bundle=info["ca_bundle"],
        executors=False,
    )
    experiment = mlflow.get_experiment_by_name("databricks-service-principal-demo")
    runs = MlflowClient().search_runs([experiment.experiment_id], max_results=10)
    latest = sorted(runs, key=lambda r: r.info.start_time)[-2:]
    assert sorted(r.data.params["C"] for r in latest) == ["0.1", "1.0"]
    for run in latest:
        assert 0.8 < run.data.metrics["accuracy"] <= 1.0
        tags = run.data.tags
        assert tags["spark_aml_bridge.platform"] == "databricks"
        assert tags["mlflow.databricks.notebookPath"] == double.spec["notebook_path"]
        assert tags["mlflow.databricks.cluster.id"] == double.spec["cluster_id"]
