"""Durable-writes tests: a separate plain MLflow reader (bearer token, no bridge; plain_access)."""

from __future__ import annotations

from typing import Any

from plain_access import plain_store

plain_reader = plain_store  # the durable tests' name for it


def history(reader: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of every point, in the workspace's order."""
    return [(m.step, m.timestamp, m.value) for m in reader.get_metric_history(run_id, key)]
