"""Shared fixtures: one emulator and one Spark session per test session."""

from __future__ import annotations

import os
import sys

import pytest

# Nothing here may reach outside this machine (MLflow 3 telemetry is on by default).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
# Fail fast in tests that exercise unreachable endpoints instead of MLflow's ~4 minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

_AZURE_ENV = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_TOKEN",
)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    from spark_aml_bridge.emulator.process import start_emulator

    handle = start_emulator(str(tmp_path_factory.mktemp("emulator")))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def short_token_emulator(tmp_path_factory: pytest.TempPathFactory):
    """A second workspace whose tokens live 4 seconds, for expiry and refresh tests."""
    from spark_aml_bridge.emulator.process import start_emulator

    handle = start_emulator(str(tmp_path_factory.mktemp("emulator-short")), token_lifetime=4)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with no Azure/MLflow/bridge settings and no live bridge."""
    for name in list(os.environ):
        if name.startswith("SPARK_AML_BRIDGE_") or name in _AZURE_ENV:
            monkeypatch.delenv(name, raising=False)
    yield
    import spark_aml_bridge

    spark_aml_bridge.disconnect()


@pytest.fixture
def use_emulator(emulator, monkeypatch: pytest.MonkeyPatch):
    """The environment emulator.json tells a user to export."""
    for name, value in emulator.info["env"].items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture(scope="session")
def spark():
    """A real local Spark session with real Python workers (this venv's Python)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("spark-aml-bridge-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "true")
        .config("spark.ui.port", "0")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield session
    session.stop()


# The install checks build their own virtual environments (minutes): tests/run-all.sh runs them
# once, explicitly, with SPARK_AML_BRIDGE_INSTALL_CHECKS=1.
collect_ignore = [] if os.environ.get("SPARK_AML_BRIDGE_INSTALL_CHECKS") == "1" else ["install"]
