"""The workspace front door: AML's URL prefix and bearer auth in front of a real MLflow app.

Requests under `/mlflow/v{1,2}.0/subscriptions/.../workspaces/{ws}` are authenticated, counted,
possibly faulted, and handed to MLflow's Flask app with the prefix moved to SCRIPT_NAME.
Requests under `/history/v1.0/subscriptions/.../workspaces/{ws}` (the run-history artifact
service, history.py) pass the same front door: outage, bearer check, workspace check, faults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Response

from spark_aml_bridge.emulator.admin import AdminApp
from spark_aml_bridge.emulator.contract import ADMIN_PREFIX
from spark_aml_bridge.emulator.faults import Fault, Faults
from spark_aml_bridge.emulator.history import HISTORY_PREFIX
from spark_aml_bridge.emulator.identity import Identity
from spark_aml_bridge.emulator.responses import aml_error, json_response
from spark_aml_bridge.emulator.stats import Stats
from spark_aml_bridge.emulator.tokens import TokenCheck, TokenService

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

# The fixed words match case-insensitively, as the real front end does.
WORKSPACE_PREFIX = re.compile(
    r"^(?P<prefix>/mlflow/v[12]\.0/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+))(?P<rest>/.*)?$",
    re.IGNORECASE,
)
# MLflow 3 logged-model APIs: AML answers 404 with an empty body.
_LOGGED_MODELS = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow/logged-models(?:/.*)?$")
# Other MLflow 3 routes AML's MLflow endpoint does not serve (traces, GenAI datasets, OTLP
# ingestion, the 3.0 API): the same empty 404, never the MLflow server behind.
_NOT_SERVED = re.compile(
    r"^/(?:api/2\.0/mlflow/(?:traces|datasets)(?:/.*)?|api/3\.0/.*|v1/traces)$"
)
_FAULT_INNER_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def workspace_path(identity: Identity, version: str = "v2.0") -> str:
    return f"/mlflow/{version}{identity.workspace_arm_id}"


def discovery_document(workspace_url: str, ui_url: str) -> dict[str, str]:
    """What the workspace's `discoveryUrl` answers: every AML service lives on one host here."""
    services = (
        "api",
        "catalog",
        "experimentation",
        "gallery",
        "history",
        "hyperdrive",
        "labeling",
        "modelmanagement",
        "pipelines",
    )
    return {**dict.fromkeys(services, workspace_url), "studio": ui_url}


class WorkspaceApp:
    """WSGI app for `https://127.0.0.1:<workspace port>`."""

    def __init__(
        self,
        mlflow_app: WSGIApp,
        tokens: TokenService,
        faults: Faults,
        stats: Stats,
        admin: AdminApp,
        authority_url: str,
        discovery: dict[str, str],
        request_check: Callable[[str, str, dict[str, Any]], Response | None] | None = None,
        history: WSGIApp | None = None,
    ) -> None:
        self.mlflow_app = mlflow_app
        self.tokens = tokens
        self.identity = tokens.identity
        self.faults = faults
        self.stats = stats
        self.admin = admin
        self.authority_url = authority_url
        self.discovery = discovery
        self.request_check = request_check
        self.history = history

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(ADMIN_PREFIX + "/"):
            return self.admin(environ, start_response)
        if path == "/discovery":
            return json_response(self.discovery)(environ, start_response)
        if self.history is not None:
            history = HISTORY_PREFIX.match(path)
            if history:
                # Faults match the whole path here, so `path_contains="/history/"` targets them.
                method = environ["REQUEST_METHOD"]
                app = self._front_door(environ, history, path, method, lambda: self.history)
                return app(environ, start_response)
        match = WORKSPACE_PREFIX.match(path)
        if not match:
            return aml_error(404, f"No route matches '{path}'.", "NotFound")(
                environ, start_response
            )
        route = match["rest"] or "/"
        method = environ["REQUEST_METHOD"]
        self.stats.count_route(method, route)
        app = self._front_door(environ, match, route, method)
        return app(environ, start_response)

    def _front_door(
        self,
        environ: dict[str, Any],
        match: re.Match[str],
        route: str,
        method: str,
        backend: Callable[[], WSGIApp] | None = None,
    ) -> WSGIApp:
        """What answers this workspace request, in the service's order of checks."""
        if backend is None:

            def backend() -> WSGIApp:
                return self._backend(environ, match, route, method)

        if self.faults.in_outage():
            return aml_error(
                503,
                "The service is temporarily unavailable (emulated outage).",
                "ServiceUnavailable",
                code="ServiceError",
                headers={"Retry-After": "1"},
            )
        check = self.tokens.check_header(environ.get("HTTP_AUTHORIZATION"))
        if not check.ok:
            self.stats.count("auth_failures")
            return self._unauthorized(check)
        if not self._is_workspace(match["sub"], match["rg"], match["ws"]):
            return aml_error(
                404,
                f"Workspace '{match['ws']}' was not found in resource group '{match['rg']}' of "
                f"subscription '{match['sub']}'.",
                "NotFound",
            )
        if not self.tokens.may_use_workspace(check.claims or {}, match["ws"]):
            self.stats.count("authorization_failures")
            oid = (check.claims or {}).get("oid")
            return aml_error(
                403,
                f"The client '{oid}' with object id '{oid}' does not have authorization to "
                "perform action 'Microsoft.MachineLearningServices/workspaces/experiments/*' "
                f"over scope '/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/{match['ws']}' or the scope is "
                "invalid.",
                "AuthorizationFailed",
            )
        fault = self.faults.take(route)
        if fault is not None:
            self.stats.count("faults_injected")
            if fault.when == "after":
                _run_to_completion(backend(), environ)
            return _fault_response(fault)
        return backend()

    def _is_workspace(self, sub: str, rg: str, ws: str) -> bool:
        ident = self.identity
        return ident.is_workspace(sub, rg, ident.workspace_name) and ws.lower() in {
            name.lower() for name in self.tokens.workspace_names()
        }

    def _backend(
        self, environ: dict[str, Any], match: re.Match[str], route: str, method: str
    ) -> WSGIApp:
        if _LOGGED_MODELS.match(route) or _NOT_SERVED.match(route):
            response = Response(status=404)
            del response.headers["Content-Type"]
            return response
        if self.request_check is not None:
            rejection = self.request_check(method, route, environ)
            if rejection is not None:
                return rejection
        # Move the AML prefix to SCRIPT_NAME: MLflow routes on the rest, URLs keep the prefix.
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + match["prefix"]
        environ["PATH_INFO"] = route
        return self.mlflow_app

    def _unauthorized(self, check: TokenCheck) -> Response:
        challenge = f'Bearer authorization_uri="{self.authority_url}/{self.identity.tenant_id}"'
        if check.problem != "missing":
            challenge += f', error="invalid_token", error_description="{check.message}"'
        return aml_error(
            401, check.message, "AuthorizationError", headers={"WWW-Authenticate": challenge}
        )


def _fault_response(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    return aml_error(
        fault.status,
        f"Injected fault: HTTP {fault.status} ({fault.when} the request reached MLflow).",
        _FAULT_INNER_CODES.get(fault.status, "InjectedFault"),
        code="UserError" if fault.status < 500 else "ServiceError",
        headers=headers,
    )


def _run_to_completion(app: WSGIApp, environ: dict[str, Any]) -> None:
    """Let `app` handle the request fully and drop its response (a response lost in transit)."""

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        return lambda data: None

    result = app(environ, start_response)
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
