"""The real MLflow tracking server, in process: configured as `mlflow server` configures workers."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.aml_ids import EXPERIMENT, RUN, AmlIds
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
    state_dir: Path, artifact_root: str | None = None, ids: AmlIds | None = None
) -> tuple[Callable[..., Any], str]:
    """Return (MLflow's Flask WSGI app, MLflow version) with stores opened and migrated.

    Opening the stores here (not on the first request) surfaces a broken database at startup
    and keeps the first client call fast. With an `azureml://…/experiments` `artifact_root`,
    experiments get `<root>/<experiment id>` and runs `<root>/<experiment id>/runs/<run id>/
    artifacts`, as on Azure ML, in the database and so in every response; with `ids`, those are
    the experiment's and run's GUIDs (what the workspace API shows), not MLflow's own ids.
    """
    env = server_environment(state_dir)
    if artifact_root:
        env["_MLFLOW_SERVER_ARTIFACT_ROOT"] = artifact_root
    (state_dir / ARTIFACTS_DIR).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    import mlflow
    from mlflow.server import app, handlers

    aml_root = bool(artifact_root and artifact_root.startswith("azureml://"))
    if aml_root:
        _aml_artifact_uris(artifact_root, ids)
    db_uri = env["_MLFLOW_SERVER_FILE_STORE"]
    handlers.initialize_backend_stores(db_uri, db_uri, env["_MLFLOW_SERVER_ARTIFACT_ROOT"])
    if aml_root:
        rebase_artifact_uris(state_dir / DB_FILE, artifact_root)
        if ids is not None:
            guid_artifact_uris(state_dir / DB_FILE, artifact_root, ids)
    return app, mlflow.__version__


# Set once per process by _aml_artifact_uris: the artifact root and the GUID map in use.
_AML_URIS: dict[str, Any] = {}


def _aml_artifact_uris(root: str, ids: AmlIds | None) -> None:
    """Make MLflow store AML's artifact URIs where it builds its own.

    MLflow's SQL store gives an experiment `<root>/<experiment id>` and derives a run's artifact
    URI as `<experiment location>/<run id>/artifacts` (2.x and 3.x alike); AML's has `runs/`
    before the run id, and AML's ids are GUIDs. SQLAlchemy attribute events rewrite the values
    as the store assigns them, before the row is written or returned.
    """
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlRun
    from sqlalchemy import event

    first = not _AML_URIS
    _AML_URIS.update(base=root.rstrip("/") + "/", ids=ids)
    if not first:
        return

    def experiment_location(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        base, ids = _AML_URIS["base"], _AML_URIS["ids"]
        if ids is not None and isinstance(value, str) and value.startswith(base):
            rest = value[len(base) :]
            if rest.isdigit():
                return base + ids.to_aml(EXPERIMENT, rest)
        return value

    def run_uri(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
        base, ids = _AML_URIS["base"], _AML_URIS["ids"]
        if isinstance(value, str) and value.startswith(base):
            parts = value[len(base) :].split("/")
            if len(parts) == 3 and parts[2] == "artifacts":
                experiment, run = parts[0], parts[1]
                if ids is not None:
                    if experiment.isdigit():
                        experiment = ids.to_aml(EXPERIMENT, experiment)
                    run = ids.to_aml(RUN, run)
                return f"{base}{experiment}/runs/{run}/artifacts"
        return value

    event.listen(SqlExperiment.artifact_location, "set", experiment_location, retval=True)
    event.listen(SqlRun.artifact_uri, "set", run_uri, retval=True)


_MLFLOW_ID_URI = re.compile(r"^(?P<exp>\d+)(?:/runs/(?P<run>[0-9a-f]{32})/artifacts)?$")


def guid_artifact_uris(db_path: Path, root: str, ids: AmlIds) -> int:
    """Rewrite stored `<root>/<int>[/runs/<hex>/artifacts]` URIs to the GUID form.

    The Default experiment is inserted by MLflow with plain SQL (no attribute event), and state
    dirs from before GUIDs hold MLflow's ids. Returns how many rows changed.
    """
    base = root.rstrip("/") + "/"
    changed = 0
    with sqlite3.connect(db_path) as db:
        for table, column, key in (
            ("experiments", "artifact_location", "experiment_id"),
            ("runs", "artifact_uri", "run_uuid"),
        ):
            rows = db.execute(
                f"SELECT {key}, {column} FROM {table} WHERE substr({column}, 1, ?) = ?",
                (len(base), base),
            ).fetchall()
            for row_key, value in rows:
                match = _MLFLOW_ID_URI.match(value[len(base) :])
                if not match:
                    continue
                new = base + ids.to_aml(EXPERIMENT, match["exp"])
                if match["run"]:
                    new += f"/runs/{ids.to_aml(RUN, match['run'])}/artifacts"
                db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (new, row_key))
                changed += 1
    return changed


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
