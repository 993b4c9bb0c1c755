"""A workspace call that failed below MLflow (refused, DNS, TLS, timeout, HTTP status with AML's
own message) becomes one sentence naming the host, the cause and the fix, the original chained.

MLflow's own answers (a missing run, a bad parameter: JSON bodies with an ``error_code``) are
left as they are: they are about the request, not the workspace.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from typing import Any

from mlflow.exceptions import MlflowException

_STATUS = re.compile(r"error code (?P<status>\d{3}) != 200\. Response body: '(?P<body>.*)'\Z", re.S)
_TOO_MANY = re.compile(r"too many (?P<status>\d{3}) error responses")


class WorkspaceRequestError(MlflowException):
    """The workspace could not be reached or answered with a service failure."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
        # urllib3 keeps the underlying error in .reason, requests in args[0].
        for holder in (seen[-1], *seen[-1].args):
            reason = getattr(holder, "reason", None)
            if isinstance(reason, BaseException) and reason not in seen and current is None:
                current = reason
    return seen


def _cause(exc: BaseException) -> tuple[str, str] | None:
    """(cause, kind) of a transport failure found in the exception chain, else None."""
    import requests

    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    for error in chain:
        if isinstance(error, (ssl.SSLError, requests.exceptions.SSLError)):
            return f"TLS failed ({_first_line(error)})", "tls"
    for error in chain:
        if isinstance(error, socket.gaierror) or "NameResolutionError" in type(error).__name__:
            return "its name does not resolve (DNS)", "dns"
    for error in chain:
        if isinstance(error, ConnectionRefusedError) or "Connection refused" in str(error):
            return "the connection was refused", "refused"
    for error in chain:
        if isinstance(error, (requests.exceptions.Timeout, socket.timeout, TimeoutError)):
            return "it did not answer in time (timeout)", "timeout"
    status = _TOO_MANY.search(text)
    if status:
        return f"it kept answering HTTP {status['status']}, also after MLflow's retries", "status"
    for error in chain:
        if isinstance(error, (requests.exceptions.ConnectionError, ConnectionError)):
            return f"the connection failed ({_first_line(error)})", "connection"
    return None


def _first_line(error: BaseException) -> str:
    # The whole cause, on one line: never cut short.
    return " ".join(str(error).split()) or type(error).__name__


def _aml_message(body: str) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if isinstance(payload, dict) and "error_code" in payload:
        return None  # MLflow's own answer about the request
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        code = error.get("code")
        return f"{code}: {error['message']}" if code else str(error["message"])
    return None


_FIXES = {
    "tls": "set ca_bundle (SPARK_AML_BRIDGE_CA_BUNDLE) to the CA that signed the workspace's "
    "certificate (e.g. a TLS-inspecting proxy's), or fix the proxy",
    "dns": "check the workspace address (`az ml workspace show --query mlflow_tracking_uri`) and "
    "this machine's DNS (a private-link workspace needs its private DNS zone)",
    "refused": "check that the workspace still exists and that this network may reach it "
    "(firewall, private link, proxy), then retry the call",
    "timeout": "check the network path to the workspace (proxy, private link) and retry; "
    "MLFLOW_HTTP_REQUEST_TIMEOUT sets how long a call may take",
    "connection": "check the network path to the workspace (proxy, private link) and retry",
    "status": "the service is failing or throttling: retry later, and check the workspace's "
    "health in the Azure portal",
    "gone": "the workspace may have been deleted or moved: check it with `az ml workspace show` "
    "and connect() to its current address",
}


def translate(exc: MlflowException, host: str) -> MlflowException | None:
    """The clear error for a failed workspace call, or None to keep MLflow's own."""
    if isinstance(exc, WorkspaceRequestError):
        return None
    from mlflow.exceptions import RestException

    from spark_aml_bridge.azureml.auth import last_error_status

    found = _cause(exc)
    if found is not None:
        cause, kind = found
    elif isinstance(exc, RestException):
        # A JSON answer: MLflow's own (error_code) stays; AML's front door's shape is translated.
        message = _aml_message(json.dumps(exc.json)) if isinstance(exc.json, dict) else None
        if message is None:
            return None
        status = last_error_status()
        cause = f"it answered HTTP {status}: {message}" if status else f"it answered {message}"
        kind = "gone" if status == 404 else "status"
    else:
        match = _STATUS.search(exc.message if isinstance(exc.message, str) else str(exc))
        if match is None:
            return None
        message = _aml_message(match["body"])
        status = int(match["status"])
        if message is None and match["body"].strip().startswith("{"):
            return None
        shown = message or (match["body"].strip() or "no message")
        cause = f"it answered HTTP {status}: {shown}"
        kind = "gone" if status == 404 else "status"
    return WorkspaceRequestError(
        f"the workspace at {host} could not serve this call: {cause}.\n  Fix: {_FIXES[kind]}",
        error_code="TEMPORARILY_UNAVAILABLE" if kind != "gone" else "RESOURCE_DOES_NOT_EXIST",
    )


def calling(store: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call`` (a store's REST call); translate a workspace failure, chaining the original."""
    try:
        return call(*args, **kwargs)
    except MlflowException as exc:
        clear = translate(exc, store.workspace_session.address.host or "?")
        if clear is None:
            raise
        raise clear from exc
