"""How a write to the mirror failed: retry later (transient, pending) or never (permanent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spark_aml_bridge.rest import Transient

__all__ = ["Pending", "Transient", "ignore_missing", "is_transient", "short_error"]

_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_STATE",
    "BAD_REQUEST",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FEATURE_DISABLED",
    "NOT_IMPLEMENTED",
    "ENDPOINT_NOT_FOUND",
    "MALFORMED_REQUEST",
    "INVALID_REQUEST",
}


class Pending(Exception):
    """Something this operation refers to is not on the mirror yet (another process mirrors it)."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later can succeed (outages, throttling, credentials, pending ids)."""
    import requests
    from mlflow.exceptions import MlflowException

    from spark_aml_bridge.errors import BridgeError

    if isinstance(exc, (Pending, Transient, requests.RequestException, OSError, TimeoutError)):
        return True
    if isinstance(exc, BridgeError):  # credentials, unreachable workspace
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES
    return False


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:400]}"


def ignore_missing(call: Callable[[], Any]) -> None:
    """Run a delete on the mirror; what is already gone there is what the delete wanted."""
    from mlflow.exceptions import MlflowException

    try:
        call()
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
