"""The emulated Entra ID (Azure AD) authority: discovery, keys, client credentials, and an
App Service-style managed identity endpoint. Enough for azure-identity and MSAL to get ARM tokens.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from spark_aml_bridge.emulator.responses import aad_error, json_response
from spark_aml_bridge.emulator.stats import Stats
from spark_aml_bridge.emulator.tokens import TokenService, arm_audience

MSI_PATH = "/msi/token"
MSI_API_VERSIONS = ("2019-08-01",)
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}
# Besides ARM, tokens for Synapse's development endpoint (its Livy batch API; the Synapse runtime
# double in emulator/synapse/ checks them). The workspace and ARM still accept only ARM tokens.
SYNAPSE_DEV_AUDIENCE = "https://dev.azuresynapse.net"


def issued_audience(resource: str) -> str | None:
    """The `aud` a token requested for `resource` carries, or None if this authority has none."""
    if resource.strip().rstrip("/") == SYNAPSE_DEV_AUDIENCE:
        return SYNAPSE_DEV_AUDIENCE
    return arm_audience(resource)


_ROUTES = [
    ("openid", re.compile(r"^/(?P<tenant>[^/]+)(?:/v2\.0)?/\.well-known/openid-configuration$")),
    ("keys", re.compile(r"^/(?P<tenant>[^/]+)/discovery(?:/v2\.0)?/keys$")),
    ("token", re.compile(r"^/(?P<tenant>[^/]+)/oauth2(?:/v2\.0)?/token$")),
]


class AuthorityApp:
    """WSGI app for `https://127.0.0.1:<authority port>`."""

    def __init__(self, base_url: str, tokens: TokenService, stats: Stats) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.stats = stats

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path == MSI_PATH:
            self.stats.count("token.managed_identity")
            return self.managed_identity_token(request)
        for name, pattern in _ROUTES:
            match = pattern.match(path)
            if not match:
                continue
            tenant = match["tenant"]
            if name == "token":
                if request.method != "POST":
                    return aad_error(
                        405, "invalid_request", 900561, "The endpoint only accepts POST requests."
                    )
                return self.client_credentials_token(request, tenant)
            if name == "keys" and tenant.lower() in ("common", "organizations"):
                return json_response(self.tokens.jwks())
            if not self._known_tenant(tenant):
                return self._unknown_tenant(tenant, "invalid_tenant", request)
            if name == "keys":
                return json_response(self.tokens.jwks())
            return json_response(self.openid_configuration(tenant, v2="/v2.0/" in path))
        return json_response({"error": "not_found", "error_description": path}, 404)

    # -- discovery ---------------------------------------------------------------------------

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() == self.tokens.identity.tenant_id.lower()

    def _unknown_tenant(self, tenant: str, error: str, request: Request) -> Response:
        return aad_error(
            400,
            error,
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud.",
            request.headers.get("client-request-id"),
        )

    def openid_configuration(self, tenant: str, v2: bool) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        version = "/v2.0" if v2 else ""
        return {
            "token_endpoint": f"{base}/oauth2{version}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery{version}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0" if v2 else self.tokens.issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2{version}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{version}/devicecode",
            "end_session_endpoint": f"{base}/oauth2{version}/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "ver"],
            "tenant_region_scope": "local",
            "cloud_instance_name": "emulator.local",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    # -- client credentials ------------------------------------------------------------------

    def client_credentials_token(self, request: Request, tenant: str) -> Response:
        form = request.form
        grant = form.get("grant_type", "")
        self.stats.count(
            "token.client_credentials" if grant == "client_credentials" else "token.other"
        )
        correlation = request.headers.get("client-request-id")
        if not self._known_tenant(tenant):
            return self._unknown_tenant(tenant, "invalid_request", request)
        if grant != "client_credentials":
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
                correlation,
            )
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = client_id or request.authorization.username
            secret = secret or request.authorization.password
        if not client_id:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
                correlation,
            )
        ident = self.tokens.identity
        known = self.tokens.principal_for_client(client_id)
        if known is None:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{ident.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
                correlation,
            )
        if not secret:
            return aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
                correlation,
            )
        principal, expected_secret = known
        if not hmac.compare_digest(secret.encode(), expected_secret.encode()):
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{principal.app_id}'.",
                correlation,
            )
        audience, problem = self._audience_from_form(form)
        if problem is not None:
            error, code, message = problem
            return aad_error(400, error, code, message, correlation)
        if form.get("claims"):
            # A claims challenge (e.g. after a revocation): always a newly minted token.
            try:
                json.loads(form["claims"])
            except ValueError:
                return aad_error(
                    400,
                    "invalid_request",
                    90014,
                    "The claims parameter is not valid JSON.",
                    correlation,
                )
            self.stats.count("token.claims_challenge")
        token, _ = self.tokens.issue(principal, audience)
        self.stats.count("tokens_issued")
        lifetime = self.tokens.lifetime
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }
        )

    def _audience_from_form(self, form: Any) -> tuple[str, tuple[str, int, str] | None]:
        """ARM audience for the v2 `scope` (or v1 `resource`) parameter, or an AAD error."""
        tenant = self.tokens.identity.tenant_id
        resource = form.get("resource")
        if resource is None:
            scope = form.get("scope")
            if not scope:
                return "", (
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            scopes = [s for s in scope.split() if s not in _RESERVED_SCOPES]
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return "", (
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            resource = scopes[0][: -len(".default")]
        audience = issued_audience(resource)
        if audience is None:
            return "", (
                "invalid_scope",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant}. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You might "
                "have sent your authentication request to the wrong tenant.",
            )
        return audience, None

    # -- managed identity (App Service protocol) ---------------------------------------------

    def managed_identity_token(self, request: Request) -> Response:
        ident = self.tokens.identity
        header = request.headers.get("X-IDENTITY-HEADER")
        if header is None:
            return _msi_error(400, "The X-IDENTITY-HEADER header is required.")
        if not hmac.compare_digest(header.encode(), ident.mi_header.encode()):
            return _msi_error(401, "The X-IDENTITY-HEADER header value is not valid.")
        args = request.args
        if args.get("api-version") not in MSI_API_VERSIONS:
            return _msi_error(400, f"api-version must be one of {', '.join(MSI_API_VERSIONS)}.")
        resource = args.get("resource")
        if not resource:
            return _msi_error(400, "The 'resource' query parameter is required.")
        for name in ("client_id", "principal_id", "object_id", "mi_res_id"):
            wanted = args.get(name)
            known = {
                "client_id": ident.mi_client_id,
                "principal_id": ident.mi_object_id,
                "object_id": ident.mi_object_id,
                "mi_res_id": self.tokens.managed_identity().mi_resource_id,
            }[name]
            if wanted and wanted.lower() != str(known).lower():
                return _msi_error(
                    400,
                    "No User Assigned or Delegated Managed Identity found for specified "
                    "ClientId/ResourceId/PrincipalId.",
                )
        audience = issued_audience(resource)
        if audience is None:
            return _msi_error(
                400,
                f"AADSTS500011: The resource principal named {resource} was not found in the "
                f"tenant named {ident.tenant_id}.",
            )
        token, expires_on = self.tokens.issue(self.tokens.managed_identity(), audience)
        self.stats.count("tokens_issued")
        return json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": ident.mi_client_id,
            }
        )


def _msi_error(status: int, message: str) -> Response:
    """App Service's identity endpoint answers errors as {statusCode, message, correlationId}."""
    return json_response(
        {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}, status
    )
