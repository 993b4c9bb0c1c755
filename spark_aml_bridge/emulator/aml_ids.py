"""Azure ML's ids for MLflow's: experiment and run ids are GUIDs on the service.

MLflow's SQL store keeps its own ids (integer experiment ids, 32-hex run ids). Each one that
crosses the emulator's API gets a random GUID the first time it is seen, kept in
`<state dir>/aml_ids.db` so ids stay the same across restarts. Lookups are served from memory.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from pathlib import Path

AML_IDS_DB = "aml_ids.db"
EXPERIMENT = "experiment"
RUN = "run"

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MLFLOW_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MLFLOW_EXPERIMENT_ID = re.compile(r"^[0-9]+$")


def is_guid(value: object) -> bool:
    return isinstance(value, str) and _GUID.match(value) is not None


class AmlIds:
    """Two-way map (kind, MLflow id) <-> GUID. Thread-safe; new pairs are written through."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ids (kind TEXT NOT NULL, mlflow_id TEXT NOT NULL, "
            "aml_id TEXT NOT NULL UNIQUE, PRIMARY KEY (kind, mlflow_id)) WITHOUT ROWID"
        )
        self._to_aml: dict[tuple[str, str], str] = {}
        self._to_mlflow: dict[tuple[str, str], str] = {}
        for kind, mlflow_id, aml_id in self._db.execute("SELECT kind, mlflow_id, aml_id FROM ids"):
            self._to_aml[(kind, mlflow_id)] = aml_id
            self._to_mlflow[(kind, aml_id)] = mlflow_id

    def to_aml(self, kind: str, mlflow_id: str) -> str:
        """The GUID of an MLflow id, created (and persisted) on first use."""
        key = (kind, str(mlflow_id))
        aml_id = self._to_aml.get(key)
        if aml_id is not None:
            return aml_id
        with self._lock:
            aml_id = self._to_aml.get(key)
            if aml_id is None:
                aml_id = str(uuid.uuid4())
                self._db.execute("INSERT INTO ids VALUES (?, ?, ?)", (kind, key[1], aml_id))
                self._to_aml[key] = aml_id
                self._to_mlflow[(kind, aml_id)] = key[1]
        return aml_id

    def known_aml(self, kind: str, mlflow_id: str) -> str | None:
        """The GUID of an MLflow id if one was handed out, without creating one."""
        return self._to_aml.get((kind, str(mlflow_id)))

    def to_mlflow(self, kind: str, aml_id: str) -> str | None:
        """The MLflow id behind a GUID, or None for a GUID this workspace never handed out."""
        if not isinstance(aml_id, str):
            return None
        return self._to_mlflow.get((kind, aml_id.lower()))

    def close(self) -> None:
        with self._lock:
            self._db.close()
