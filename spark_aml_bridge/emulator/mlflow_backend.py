"""The real MLflow tracking server, in process: configured as `mlflow server` configures workers."""

from __future__ import annotations

import os
import re
import sqlite3
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


def load_mlflow_app(
    state_dir: Path, artifact_root: str | None = None
) -> tuple[Callable[..., Any], str]:
    """Return (MLflow's Flask WSGI app, MLflow version) with stores opened and migrated.

    Opening the stores here (not on the first request) surfaces a broken database at startup
    and keeps the first client call fast. With an `azureml://…/experiments` `artifact_root`,
    experiments get `<root>/<experiment id>` and runs `<root>/<experiment id>/runs/<run id>/
    artifacts`, as on Azure ML, in the database and so in every response.
    """
    env = server_environment(state_dir)
    if artifact_root:
        env["_MLFLOW_SERVER_ARTIFACT_ROOT"] = artifact_root
    (state_dir / ARTIFACTS_DIR).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    import mlflow
    from mlflow.server import app, handlers

    if artifact_root and artifact_root.startswith("azureml://"):
        _aml_run_artifact_uris(artifact_root)
    db_uri = env["_MLFLOW_SERVER_FILE_STORE"]
    handlers.initialize_backend_stores(db_uri, db_uri, env["_MLFLOW_SERVER_ARTIFACT_ROOT"])
    if artifact_root and artifact_root.startswith("azureml://"):
        rebase_artifact_uris(state_dir / DB_FILE, artifact_root)
    return app, mlflow.__version__


def _aml_run_artifact_uris(root: str) -> None:
    """Make MLflow store `<root>/<exp>/runs/<run>/artifacts` where it builds `<root>/<exp>/<run>/…`.

    MLflow's SQL store derives a run's artifact URI as `<experiment location>/<run id>/artifacts`
    (2.x and 3.x alike); AML's has `runs/` before the run id. A SQLAlchemy attribute event
    rewrites the value as the store assigns it, before the row is written or returned.
    """
    from mlflow.store.tracking.dbmodels.models import SqlRun
    from sqlalchemy import event

    base = root.rstrip("/") + "/"
    if getattr(SqlRun, "_spark_aml_bridge_root", None) == base:
        return

    def rewrite(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        if isinstance(value, str) and value.startswith(base):
            parts = value[len(base) :].split("/")
            if len(parts) == 3 and parts[2] == "artifacts":
                return f"{base}{parts[0]}/runs/{parts[1]}/artifacts"
        return value

    event.listen(SqlRun.artifact_uri, "set", rewrite, retval=True)
    SqlRun._spark_aml_bridge_root = base


_AML_EXPERIMENTS = re.compile(
    r"^azureml://[^/]+/mlflow/v[12]\.0/subscriptions/[^/]+/resourceGroups/[^/]+/providers"
    r"/Microsoft\.MachineLearningServices/workspaces/[^/]+/experiments/",
    re.IGNORECASE,
)


def rebase_artifact_uris(db_path: Path, root: str) -> int:
    """Point stored `azureml://` artifact URIs at this start's host (its port may have changed).

    Returns how many rows were updated. Artifacts are kept by run id, not by host, so the
    rewritten URIs reach the same artifacts.
    """
    base = root.rstrip("/") + "/"
    changed = 0
    with sqlite3.connect(db_path) as db:
        for table, column, key in (
            ("experiments", "artifact_location", "experiment_id"),
            ("runs", "artifact_uri", "run_uuid"),
        ):
            rows = db.execute(
                f"SELECT {key}, {column} FROM {table} WHERE {column} LIKE 'azureml://%'"
            ).fetchall()
            for row_key, value in rows:
                match = _AML_EXPERIMENTS.match(value)
                if match and match.group(0) != base:
                    db.execute(
                        f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
                        (base + value[match.end() :], row_key),
                    )
                    changed += 1
    return changed
