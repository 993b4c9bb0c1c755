"""The one reading of an HTTP Retry-After header that the background senders share."""

from __future__ import annotations

from typing import Any

MAX_RETRY_AFTER_SECONDS = 60.0  # a server asking for longer gets asked again after this


def retry_after_seconds(response: Any) -> float | None:
    """Seconds the server asked to wait (capped), or None when it said nothing usable."""
    raw = response.headers.get("Retry-After")
    try:
        return min(float(raw), MAX_RETRY_AFTER_SECONDS) if raw is not None else None
    except ValueError:
        return None
