"""Response bodies in the shapes each emulated Azure service uses for success and errors."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from werkzeug.wrappers import Response

from spark_aml_bridge.emulator.identity import REGION


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


def utc_now_iso() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def aad_error(
    status: int, error: str, code: int, message: str, correlation_id: str | None = None
) -> Response:
    """Entra ID (AAD) OAuth error: `error`, `error_description` led by `AADSTSnnnnn:`, and ids."""
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
        f"Timestamp: {timestamp}"
    )
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return json_response(body, status)


def arm_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """Azure Resource Manager error: `{"error": {"code", "message"}}`."""
    merged = {"x-ms-failure-cause": "gateway", "x-ms-request-id": str(uuid.uuid4())}
    merged.update(headers or {})
    return json_response({"error": {"code": code, "message": message}}, status, merged)


def aml_error(
    status: int,
    message: str,
    inner_code: str,
    code: str = "UserError",
    headers: dict[str, str] | None = None,
) -> Response:
    """Azure ML service error body. It has no MLflow `error_code`, as the real service's 401s."""
    request_id = uuid.uuid4().hex
    body = {
        "error": {
            "code": code,
            "severity": None,
            "message": message,
            "messageFormat": message,
            "messageParameters": {},
            "referenceCode": None,
            "detailsUri": None,
            "target": None,
            "details": [],
            "innerError": {"code": inner_code, "innerError": None},
            "debugInfo": None,
            "additionalInfo": None,
        },
        "correlation": {"operation": uuid.uuid4().hex, "request": request_id[:16]},
        "environment": REGION,
        "location": REGION,
        "time": utc_now_iso(),
        "componentName": "mlflow",
    }
    merged = {"x-ms-response-type": "error", "x-request-id": request_id}
    merged.update(headers or {})
    return json_response(body, status, merged)


def mlflow_error(status: int, error_code: str, message: str) -> Response:
    """MLflow REST error, for requests the AML service rejects with MLflow's own shape."""
    return json_response({"error_code": error_code, "message": message}, status)
