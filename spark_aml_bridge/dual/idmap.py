"""The map from primary ids to mirror ids (experiments, runs, logged models, model versions).

Ids cannot be chosen by an MLflow client, so every primary object has its own mirror id. The
tags on both sides are the truth (the map can always be rebuilt from them); this map caches it:
a bounded dict in memory, persisted in the spool's ``idmap`` table when there is a spool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_aml_bridge.dual.spool import Spool

CACHE_LIMIT = 100_000


class IdMap:
    """Primary id -> mirror id, per kind ("experiment", "run", "model", "version")."""

    def __init__(self, spool: Spool | None = None) -> None:
        self.spool = spool
        self._cache: dict[tuple[str, str], str] = {}

    def get(self, kind: str, primary_id: str) -> str | None:
        """The known mirror id, from memory or the spool; None when not known here."""
        found = self._cache.get((kind, primary_id))
        if found is None and self.spool is not None:
            found = self.spool.idmap_get(kind, primary_id)
            if found is not None:
                self.put(kind, primary_id, found, persist=False)
        return found

    def put(self, kind: str, primary_id: str, mirror_id: str, *, persist: bool = True) -> None:
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()  # bounded memory; the spool and the tags still have it
        self._cache[(kind, primary_id)] = mirror_id
        if persist and self.spool is not None:
            self.spool.idmap_put(kind, primary_id, mirror_id)
