"""Injected faults and outages for the workspace endpoint (driven through the admin API)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

WHEN = ("before", "after")


@dataclasses.dataclass
class Fault:
    """The next `count` matching requests get `status`.

    `before`: rejected without reaching MLflow (a throttling front door).
    `after`: MLflow applies the request, then the client gets the error (a lost response).
    """

    status: int
    count: int = 1
    retry_after: int | None = None
    path_contains: str | None = None
    when: str = "before"

    @classmethod
    def from_json(cls, payload: Any) -> Fault:
        """Validate an admin request body; raises ValueError with a readable reason."""
        if not isinstance(payload, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(payload) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        status = payload.get("status", 503)
        count = payload.get("count", 1)
        retry_after = payload.get("retry_after")
        when = payload.get("when") or "before"
        path_contains = payload.get("path_contains") or None
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if retry_after is not None:
            if not isinstance(retry_after, (int, float)) or retry_after < 0:
                raise ValueError("retry_after must be a non-negative number of seconds or null")
            # The header carries whole seconds (clients parse it as an integer).
            retry_after = math.ceil(retry_after)
        if when not in WHEN:
            raise ValueError(f"when must be one of {WHEN}")
        if path_contains is not None and not isinstance(path_contains, str):
            raise ValueError("path_contains must be a string or null")
        return cls(status, count, retry_after, path_contains, when)

    def matches(self, route: str) -> bool:
        return self.path_contains is None or self.path_contains in route


class Faults:
    """A queue of pending faults plus an optional outage window; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self._outage_until = 0.0

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def take(self, route: str) -> Fault | None:
        """Consume one use of the first pending fault that matches `route`."""
        with self._lock:
            for fault in self._pending:
                if fault.matches(route):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._pending.remove(fault)
                    return dataclasses.replace(fault, count=1)
        return None

    def start_outage(self, seconds: float) -> None:
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
            self._outage_until = 0.0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            remaining = max(0.0, self._outage_until - time.monotonic())
            return {
                "pending": [dataclasses.asdict(f) for f in self._pending],
                "outage_seconds_left": round(remaining, 3),
            }
