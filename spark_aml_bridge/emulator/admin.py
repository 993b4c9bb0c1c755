"""Admin API under `/_emulator/` on the workspace port: faults, outages, revocation, stats.

Every route but `health` needs the `X-Emulator-Admin-Key` header from emulator.json.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from werkzeug.wrappers import Request, Response

from spark_aml_bridge.emulator.contract import ADMIN_KEY_HEADER, ADMIN_PREFIX
from spark_aml_bridge.emulator.faults import Fault, Faults
from spark_aml_bridge.emulator.responses import json_response
from spark_aml_bridge.emulator.stats import Stats
from spark_aml_bridge.emulator.tokens import TokenService


class AdminApp:
    def __init__(self, admin_key: str, faults: Faults, stats: Stats, tokens: TokenService) -> None:
        self.admin_key = admin_key
        self.faults = faults
        self.stats = stats
        self.tokens = tokens

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        route = request.path[len(ADMIN_PREFIX) :]
        if route == "/health":
            return json_response({"status": "ok", "pid": os.getpid()})
        key = request.headers.get(ADMIN_KEY_HEADER, "")
        if not hmac.compare_digest(key.encode(), self.admin_key.encode()):
            return json_response(
                {"error": f"missing or wrong {ADMIN_KEY_HEADER} header (see emulator.json)"}, 403
            )
        handler = _ROUTES.get((request.method, route))
        if handler is None:
            return json_response({"error": f"no admin route {request.method} {route}"}, 404)
        try:
            payload = json.loads(request.get_data() or b"{}")
            return handler(self, payload)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    def add_fault(self, payload: Any) -> Response:
        self.faults.add(Fault.from_json(payload))
        return json_response(self.faults.snapshot())

    def list_faults(self, payload: Any) -> Response:
        return json_response(self.faults.snapshot())

    def outage(self, payload: Any) -> Response:
        seconds = payload.get("seconds") if isinstance(payload, dict) else None
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        self.faults.start_outage(float(seconds))
        return json_response(self.faults.snapshot())

    def revoke(self, payload: Any) -> Response:
        return json_response({"revoked_before": self.tokens.revoke_all()})

    def reset(self, payload: Any) -> Response:
        """Back to normal service: no faults, no outage, no revocation."""
        self.faults.reset()
        self.tokens.clear_revocation()
        return json_response(self.faults.snapshot())

    def get_stats(self, payload: Any) -> Response:
        return json_response(self.stats.snapshot())

    def reset_stats(self, payload: Any) -> Response:
        self.stats.reset()
        return json_response(self.stats.snapshot())


_ROUTES = {
    ("POST", "/faults"): AdminApp.add_fault,
    ("GET", "/faults"): AdminApp.list_faults,
    ("POST", "/outage"): AdminApp.outage,
    ("POST", "/revoke"): AdminApp.revoke,
    ("POST", "/reset"): AdminApp.reset,
    ("GET", "/stats"): AdminApp.get_stats,
    ("POST", "/stats/reset"): AdminApp.reset_stats,
}
