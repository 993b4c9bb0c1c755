"""One MLflow REST request, sent once: what the tracking store, the dual mirror and durable
writes use where MLflow's own retries would be blind (a retried POST could apply twice).

The caller decides about retrying: a transient answer (throttling, an outage) raises
``Transient`` carrying the server's Retry-After; an error answer raises MLflow's own exception,
with the server's error code; a success returns the parsed JSON body.
"""

from __future__ import annotations

import json
from typing import Any

from spark_aml_bridge.mlflow_private import http_request, verify_rest_response
from spark_aml_bridge.retry_after import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Transient(Exception):
    """The server did not answer, or answered 'try again later'."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def send_once(
    host_creds: Any,
    endpoint: str,
    method: str,
    *,
    json_body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """The raw response of one request, without MLflow's retries or status checks."""
    kwargs: dict[str, Any] = {"max_retries": 0, "raise_on_status": False}
    if json_body is not None:
        kwargs["json"] = json_body
    if params is not None:
        kwargs["params"] = params
    return http_request(host_creds, endpoint, method, **kwargs)


def is_transient_status(response: Any) -> bool:
    return response.status_code in TRANSIENT_STATUS


def retry_wait(response: Any, fallback: float) -> float:
    """Seconds to wait before retrying: the server's Retry-After, else `fallback` (both capped)."""
    return retry_after_seconds(response) or min(fallback, MAX_RETRY_AFTER_SECONDS)


def parsed(response: Any, endpoint: str) -> Any:
    """The JSON body of a successful answer; MLflow's exception for an error answer."""
    return json.loads(verify_rest_response(response, endpoint).text)


def call_once(
    host_creds: Any,
    endpoint: str,
    method: str,
    *,
    said: str,
    json_body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """Send once and read the answer; `said` words a transient answer ("the mirror answered
    HTTP {status} to log-batch")."""
    response = send_once(host_creds, endpoint, method, json_body=json_body, params=params)
    if is_transient_status(response):
        raise Transient(said.format(status=response.status_code), retry_after_seconds(response))
    return parsed(response, endpoint)
