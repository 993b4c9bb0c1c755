"""Importing the package is cheap, and its MLflow entry points never break `import mlflow`."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=120
    )


def test_import_loads_no_mlflow_spark_or_azure_sdk():
    result = _python(
        "import sys, spark_aml_bridge\n"
        "heavy = ('mlflow', 'pyspark', 'azure.identity', 'requests')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_plugins_register_cleanly_in_either_import_order():
    for code in (
        "import spark_aml_bridge, mlflow",
        "import mlflow, spark_aml_bridge",
    ):
        result = _python(
            code + "\n"
            "from mlflow.tracking._tracking_service.utils import _tracking_store_registry as r\n"
            "from mlflow.store.artifact.artifact_repository_registry import "
            "_artifact_repository_registry as a\n"
            "print(r._registry['azureml'].__module__, a._registry['azureml'].__module__)"
        )
        assert result.returncode == 0, result.stderr
        assert "Failure attempting to register" not in result.stderr
        assert "partially initialized" not in result.stderr
        assert result.stdout.split() == ["spark_aml_bridge.azureml.entry"] * 2
