"""Who a credential or token is, said once: token claims, short ids, the fingerprint that keys
token caches, and the one service-principal builder every platform's sources use."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from spark_aml_bridge.credentials.sources import BuiltCredential, SourceContext


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for display and expiry only)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}


def short_id(value: str | None) -> str:
    """Ids shown to humans: enough to recognise, not the whole GUID."""
    if not value:
        return "?"
    return value if len(value) <= 8 else value[:8] + "…"


def fingerprint(value: str | None) -> str:
    """A one-way digest of a secret, for cache keys: a changed secret gets new tokens."""
    return hashlib.sha256((value or "").encode()).hexdigest()[:16]


def describe_identity(claims: dict[str, Any], origin: str) -> str:
    """ "user a@b in tenant 72f9… via <origin>" from a token's claims (never the token)."""
    tenant = short_id(claims.get("tid"))
    if claims.get("upn") or claims.get("unique_name"):
        who = f"user {claims.get('upn') or claims.get('unique_name')}"
    elif claims.get("appid") or claims.get("azp"):
        who = f"app {short_id(claims.get('appid') or claims.get('azp'))}"
    else:
        who = f"principal {short_id(claims.get('oid'))}"
    return f"{who} in tenant {tenant} via {origin}"


def describe_service_principal(client_id: str | None, tenant_id: str | None) -> str:
    return f"service principal {short_id(client_id)} (tenant {short_id(tenant_id)})"


def service_principal_cache_key(
    authority: str, tenant_id: str | None, client_id: str | None, secret: str | None
) -> tuple[Any, ...]:
    """The token-cache key of a service principal, whichever source found it: the same identity
    shares tokens; a changed secret (or certificate) does not. Never the secret itself."""
    return ("sp", authority, tenant_id, client_id, fingerprint(secret))


def service_principal(
    context: SourceContext,
    tenant_id: str | None,
    client_id: str | None,
    *,
    secret: str | None = None,
    certificate_path: str | None = None,
    origin: str,
    source: str,
    executor_reusable: bool = False,
) -> BuiltCredential:
    """An azure-identity client-secret (or certificate) credential for a service principal,
    with the authority and CA of the settings; `origin` ends its description ("from env")."""
    kwargs = context.aad_kwargs()

    def factory() -> Any:
        from azure.identity import CertificateCredential, ClientSecretCredential

        if secret:
            return ClientSecretCredential(tenant_id, client_id, secret, **kwargs)
        return CertificateCredential(tenant_id, client_id, certificate_path, **kwargs)

    return BuiltCredential(
        factory=factory,
        description=f"{describe_service_principal(client_id, tenant_id)} {origin}",
        source=source,
        cache_key=service_principal_cache_key(
            context.authority, tenant_id, client_id, secret or certificate_path
        ),
        executor_reusable=executor_reusable,
    )


MANAGED_IDENTITY_ENDPOINT_ENV = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")


def managed_identity_endpoint(environ: Any) -> str | None:
    """The managed identity endpoint the host announces (App Service / Azure ML / Arc style)."""
    return next((environ[k] for k in MANAGED_IDENTITY_ENDPOINT_ENV if environ.get(k)), None)


def managed_identity(
    context: SourceContext, client_id: str | None, *, description: str, source: str
) -> BuiltCredential:
    """An azure-identity managed identity credential (user-assigned when `client_id` is given);
    `description` is followed by which identity it is ("(system-assigned)")."""
    kwargs = context.azure_kwargs()
    if client_id:
        kwargs["client_id"] = client_id

    def factory() -> Any:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(**kwargs)

    which = f"user-assigned {short_id(client_id)}" if client_id else "system-assigned"
    return BuiltCredential(
        factory=factory,
        description=f"{description} ({which})",
        source=source,
        cache_key=("mi", client_id, managed_identity_endpoint(context.environ)),
    )
