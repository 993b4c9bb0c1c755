"""The emulated Azure Resource Manager: just the workspace resource, with ARM's auth and errors."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.wrappers import Request, Response

from spark_aml_bridge.emulator.identity import REGION, Identity
from spark_aml_bridge.emulator.responses import arm_error, json_response
from spark_aml_bridge.emulator.stats import Stats
from spark_aml_bridge.emulator.tokens import TokenCheck, TokenService

# ARM paths are case-insensitive.
_WORKSPACE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/?$",
    re.IGNORECASE,
)
_ARM_AUTH_CODES = {
    "missing": "AuthenticationFailed",
    "expired": "ExpiredAuthenticationToken",
    "audience": "InvalidAuthenticationTokenAudience",
    "tenant": "InvalidAuthenticationTokenTenant",
}


class ArmApp:
    """WSGI app for `https://127.0.0.1:<arm port>`."""

    def __init__(
        self,
        identity: Identity,
        tokens: TokenService,
        stats: Stats,
        authority_url: str,
        workspace_properties: dict[str, Any],
    ) -> None:
        self.identity = identity
        self.tokens = tokens
        self.stats = stats
        self.authority_url = authority_url
        self.workspace_properties = workspace_properties

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.stats.count("arm_requests")
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        check = self.tokens.check_header(request.headers.get("Authorization"))
        if not check.ok:
            self.stats.count("arm_auth_failures")
            return self._unauthorized(check)
        if not request.args.get("api-version"):
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        match = _WORKSPACE.match(request.path)
        if not match:
            return arm_error(
                404, "NotFound", f"No HTTP resource was found that matches '{request.path}'."
            )
        if request.method != "GET":
            return arm_error(
                405,
                "MethodNotAllowed",
                f"The emulator's ARM only serves GET on workspaces, not {request.method}.",
            )
        ident = self.identity
        if match["sub"].lower() != ident.subscription_id.lower():
            return arm_error(
                404,
                "SubscriptionNotFound",
                f"The subscription '{match['sub']}' could not be found.",
            )
        if match["rg"].lower() != ident.resource_group.lower():
            return arm_error(
                404, "ResourceGroupNotFound", f"Resource group '{match['rg']}' could not be found."
            )
        names = {name.lower(): name for name in self.tokens.workspace_names()}
        if match["ws"].lower() not in names:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{match['ws']}' under "
                f"resource group '{match['rg']}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return json_response(self.workspace_resource(names[match["ws"].lower()]))

    def _unauthorized(self, check: TokenCheck) -> Response:
        tenant = self.identity.tenant_id
        code = _ARM_AUTH_CODES.get(check.problem or "", "InvalidAuthenticationToken")
        if check.problem == "missing":
            message = "Authentication failed. The 'Authorization' header is missing."
            challenge = (
                f'Bearer authorization_uri="{self.authority_url}/{tenant}", error="invalid_token", '
                'error_description="The authentication failed because of missing '
                "'Authorization' header.\""
            )
        else:
            message = check.message
            challenge = (
                f'Bearer authorization_uri="{self.authority_url}/{tenant}", error="invalid_token", '
                f'error_description="{check.message}"'
            )
        return arm_error(401, code, message, {"WWW-Authenticate": challenge})

    def workspace_resource(self, name: str | None = None) -> dict[str, Any]:
        ident = self.identity
        prefix = f"/subscriptions/{ident.subscription_id}/resourceGroups/{ident.resource_group}"
        name = name or ident.workspace_name
        properties = dict(self.workspace_properties)
        workspace_id = ident.workspace_id
        extra = next((w for w in self.tokens.extra_workspaces if w.name == name), None)
        if extra is not None:
            # Same host, the other workspace's path.
            properties["mlFlowTrackingUri"] = properties["mlFlowTrackingUri"].replace(
                ident.workspace_arm_id, extra.arm_id(ident)
            )
            workspace_id = extra.workspace_id
        return {
            "id": f"{prefix}/providers/Microsoft.MachineLearningServices/workspaces/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "location": REGION,
            "kind": "Default",
            "tags": {},
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": ident.mi_object_id,
                "tenantId": ident.tenant_id,
            },
            "properties": {
                "friendlyName": name,
                "description": "Local Azure ML workspace emulator (spark-aml-bridge)",
                "workspaceId": workspace_id,
                "tenantId": ident.tenant_id,
                "provisioningState": "Succeeded",
                "storageAccount": f"{prefix}/providers/Microsoft.Storage/storageAccounts/stlocal",
                "keyVault": f"{prefix}/providers/Microsoft.KeyVault/vaults/kv-local",
                "applicationInsights": f"{prefix}/providers/Microsoft.Insights/components/ai-local",
                "hbiWorkspace": False,
                "publicNetworkAccess": "Enabled",
                **properties,
            },
        }
