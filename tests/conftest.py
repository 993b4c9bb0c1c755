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


@pytest.fixture(scope="session")
def token_5s_emulator(tmp_path_factory: pytest.TempPathFactory):
    """A workspace whose tokens live 5 seconds, for Spark jobs that outlive many tokens."""
    from spark_aml_bridge.emulator.process import start_emulator

    handle = start_emulator(
        str(tmp_path_factory.mktemp("emulator-5s")),
        token_lifetime=5,
        extra_args=["--no-databricks"],
    )
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with no Azure/MLflow/bridge settings and no live bridge."""
    for name in list(os.environ):
        if name.startswith("SPARK_AML_BRIDGE_") or name in _AZURE_ENV:
            monkeypatch.delenv(name, raising=False)
    # A workspace store built in-process without connect() (zero code) takes over MLflow's run
    # links for the rest of the process; tests that start fresh processes must not inherit that.
    from spark_aml_bridge import links

    monkeypatch.delenv(links.MLFLOW_SUPPRESS_LINKS, raising=False)
    monkeypatch.setitem(links._printing, "owned", False)
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


@pytest.fixture
def synapse_runtime(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Factory: a Synapse/Fabric runtime double for an emulator, activated in this process, with
    fresh bridge sessions; deactivated (env, sys.path, Spark conf, TokenLibrary) afterwards."""
    from spark_aml_bridge import session
    from spark_aml_bridge.emulator.synapse.runtime import SynapseRuntime

    session._reset_for_tests()
    active: list[SynapseRuntime] = []

    def make(emulator, spark=None, **options):
        runtime = SynapseRuntime(emulator.info, tmp_path / f"synapse-{len(active)}", **options)
        # What a user gives: the workspace (and, for the emulator, its CA); no Azure env vars.
        monkeypatch.setenv("SPARK_AML_BRIDGE_WORKSPACE", emulator.info["tracking_uri"])
        monkeypatch.setenv("SPARK_AML_BRIDGE_CA_BUNDLE", emulator.info["ca_bundle"])
        active.append(runtime.activate(spark))
        return runtime

    yield make
    import spark_aml_bridge

    spark_aml_bridge.disconnect()
    for runtime in reversed(active):
        runtime.deactivate()
    session._reset_for_tests()


@pytest.fixture
def databricks_runtime(emulator, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Factory: make this process look like a Databricks driver (the runtime double).

    `databricks_runtime(spark=None, workspace_emulator=None, **spec)` activates a double whose
    service credentials, passthrough token and Databricks host come from the emulator, with the
    workspace settings a user gives (no Azure env vars); fresh bridge sessions; undone afterwards.
    """
    from spark_aml_bridge import session
    from spark_aml_bridge.emulator.databricks.runtime import DatabricksRuntimeDouble

    session._reset_for_tests()
    made: list[DatabricksRuntimeDouble] = []

    def make(spark=None, workspace_emulator=None, **spec):
        info = (workspace_emulator or emulator).info
        state = tmp_path / f"databricks-runtime-{len(made)}"
        double = DatabricksRuntimeDouble.from_emulator(info, state, **spec)
        monkeypatch.setenv("SPARK_AML_BRIDGE_WORKSPACE", info["tracking_uri"])
        monkeypatch.setenv("SPARK_AML_BRIDGE_CA_BUNDLE", info["ca_bundle"])
        monkeypatch.setenv("SPARK_AML_BRIDGE_AUTHORITY", info["authority"])
        made.append(double.activate(spark))
        return double

    yield make
    import spark_aml_bridge

    spark_aml_bridge.disconnect()
    for double in reversed(made):
        double.deactivate()
    session._reset_for_tests()


@pytest.fixture(scope="session")
def azurite_emulator(tmp_path_factory: pytest.TempPathFactory):
    """A second workspace whose run artifacts live in Azurite (Microsoft's Azure Storage emulator,
    installed from npm on first use, telemetry off), started only when a test asks for it.

    Missing Node.js/npm fails the tests that need it (CI machines have node 20), never skips.
    """
    from spark_aml_bridge.emulator.azurite import AzuriteError, start_azurite
    from spark_aml_bridge.emulator.process import start_emulator

    azurite = problem = None
    try:
        azurite = start_azurite(tmp_path_factory.mktemp("azurite"))
    except AzuriteError as exc:
        problem = str(exc)
    if azurite is None:  # outside the except block: one clear message, no chained traceback
        pytest.fail(f"The artifact tests against Azurite cannot start it. {problem}", pytrace=False)
    try:
        handle = start_emulator(
            str(tmp_path_factory.mktemp("emulator-azurite")),
            blob_backend="azurite",
            azurite_url=azurite.url,
            azurite_key=azurite.key,
        )
        try:
            yield handle
        finally:
            handle.stop()
    finally:
        azurite.stop()


# -- dual tracking (tests/test_dual_*.py) -------------------------------------------------------
@pytest.fixture(scope="session")
def dual_primary(emulator, tmp_path_factory: pytest.TempPathFactory):
    """(tracking URI, env) of the primary side for dual tracking: the emulator's Databricks
    workspace double when it runs one, else a local SQLite store."""
    info = emulator.info
    if info.get("databricks_host"):
        env = {
            "DATABRICKS_HOST": info["databricks_host"],
            "DATABRICKS_TOKEN": info["databricks_token"],
        }
        return "databricks", env
    return f"sqlite:///{tmp_path_factory.mktemp('dual-primary') / 'mlflow.db'}", {}


@pytest.fixture
def dual_env(use_emulator, dual_primary, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A dual-tracking process's environment: the workspace emulator as the mirror, the primary
    and its credentials, a fresh spool directory (in the dual URI, so each test gets its store).
    Returns the env dict (for subprocesses); `connect(mode="dual")` then needs no arguments."""
    uri, env = dual_primary
    env = dict(env)
    env["SPARK_AML_BRIDGE_DUAL_PRIMARY"] = uri
    env["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"] = str(tmp_path / "spool")
    env["SPARK_AML_BRIDGE_MODE"] = "dual"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield {**use_emulator.info["env"], **env}
    from spark_aml_bridge.dual.worker import close_all

    use_emulator.reset()
    close_all(timeout=10)  # while the primary's credentials are still in the environment


@pytest.fixture(scope="session")
def short_sas_emulator(tmp_path_factory: pytest.TempPathFactory):
    """A workspace whose blob SAS URLs live 2 seconds, for expiry handling."""
    from spark_aml_bridge.emulator.process import start_emulator

    handle = start_emulator(
        str(tmp_path_factory.mktemp("emulator-sas")), sas_lifetime=2, extra_args=["--no-databricks"]
    )
    yield handle
    handle.stop()


# -- side by side with a plain MLflow server (tests/test_side_by_side_*.py) ---------------------
@pytest.fixture(scope="session")
def plain_mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` on 127.0.0.1 (one worker, sqlite, proxied artifacts): its URL. The
    reference for "same calls, same results" tests."""
    from plain_server import plain_mlflow_server as serve

    with serve(tmp_path_factory.mktemp("plain-mlflow")) as url:
        yield url
