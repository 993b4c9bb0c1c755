"""Request counters the admin API reports, so tests can see what clients really sent."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters: token requests by grant, workspace requests by route, failures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._routes: Counter[str] = Counter()
        # Per-service request counters: "history_requests", "blob_requests".
        self._groups: dict[str, Counter[str]] = {}

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def count_route(self, method: str, route: str) -> None:
        with self._lock:
            self._routes[f"{method} {route}"] += 1

    def count_in(self, group: str, key: str) -> None:
        with self._lock:
            self._groups.setdefault(group, Counter())[key] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._routes.clear()
            self._groups.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            routes = dict(self._routes)
            groups = {name: dict(counter) for name, counter in self._groups.items()}
        grants = {
            "client_credentials": counts.get("token.client_credentials", 0),
            "managed_identity": counts.get("token.managed_identity", 0),
        }
        grants["other"] = counts.get("token.other", 0)
        grants["total"] = sum(grants.values())
        return {
            "token_requests": grants,
            "tokens_issued": counts.get("tokens_issued", 0),
            "claims_challenges": counts.get("token.claims_challenge", 0),
            "workspace_requests": routes,
            "workspace_requests_total": sum(routes.values()),
            "auth_failures": counts.get("auth_failures", 0),
            "faults_injected": counts.get("faults_injected", 0),
            "arm_requests": counts.get("arm_requests", 0),
            "arm_auth_failures": counts.get("arm_auth_failures", 0),
            # Run-history artifact service (workspace port) by "METHOD route", and the blob
            # endpoint by operation (PutBlob, PutBlock, PutBlockList, GetBlob, ...).
            "history_requests": groups.get("history_requests", {}),
            "history_requests_total": sum(groups.get("history_requests", {}).values()),
            "blob_requests": groups.get("blob_requests", {}),
            "blob_requests_total": sum(groups.get("blob_requests", {}).values()),
            "blob_auth_failures": counts.get("blob_auth_failures", 0),
        }
