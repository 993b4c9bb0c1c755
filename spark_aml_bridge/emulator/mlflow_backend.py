"""The real MLflow tracking server, in process: configured as `mlflow server` configures workers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.contract import ARTIFACTS_DIR, DB_FILE


def server_environment(state_dir: Path) -> dict[str, str]:
    """The variables `mlflow server --serve-artifacts` hands its workers (read at import time)."""
    db_uri = f"sqlite:///{(state_dir / DB_FILE).resolve()}"
    return {
        "_MLFLOW_SERVER_FILE_STORE": db_uri,
        "_MLFLOW_SERVER_REGISTRY_STORE": db_uri,
        # What `mlflow server` resolves the default artifact root to when serving artifacts.
        "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str((state_dir / ARTIFACTS_DIR).resolve()),
        # MLflow 3: `mlflow server` pins these for its workers; no multi-tenant workspaces, no
        # job runner (it would spawn subprocesses the emulator does not manage).
        "MLFLOW_ENABLE_WORKSPACES": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def load_mlflow_app(state_dir: Path) -> tuple[Callable[..., Any], str]:
    """Return (MLflow's Flask WSGI app, MLflow version) with stores opened and migrated.

    Opening the stores here (not on the first request) surfaces a broken database at startup
    and keeps the first client call fast.
    """
    env = server_environment(state_dir)
    (state_dir / ARTIFACTS_DIR).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    import mlflow
    from mlflow.server import app, handlers

    db_uri = env["_MLFLOW_SERVER_FILE_STORE"]
    handlers.initialize_backend_stores(db_uri, db_uri, env["_MLFLOW_SERVER_ARTIFACT_ROOT"])
    return app, mlflow.__version__
