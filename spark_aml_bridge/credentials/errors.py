"""Turn azure-identity failures into one clear error that names the fix."""

from __future__ import annotations

import re

from spark_aml_bridge.errors import CredentialError

# AADSTS code -> (what it means, what to do).
_AAD_CODES: dict[str, tuple[str, str]] = {
    "90002": (
        "the tenant was not found by the authority",
        "check the tenant id (AZURE_TENANT_ID / tenant_id=) and the authority "
        "(AZURE_AUTHORITY_HOST)",
    ),
    "900023": (
        "the tenant id is not a valid tenant",
        "set AZURE_TENANT_ID / tenant_id= to the directory (tenant) id of the service principal",
    ),
    "7000215": (
        "the client secret is wrong or expired",
        "create a new client secret for the app registration and update the secret reference",
    ),
    "7000222": (
        "the client secret has expired",
        "create a new client secret for the app registration and update the secret reference",
    ),
    "700016": (
        "the client id is not an application in this tenant",
        "check AZURE_CLIENT_ID / client_id= and that the app registration lives in this tenant",
    ),
    "500011": (
        "the token audience (Azure Resource Manager) is not available to this tenant",
        "check the cloud setting (SPARK_AML_BRIDGE_CLOUD) matches the tenant's cloud",
    ),
}

# MSAL reports transport failures as authentication errors: recognise them by their text.
_UNREACHABLE = re.compile(
    r"Failed to establish a new connection|Connection refused|Max retries exceeded|"
    r"timed out|NameResolutionError|Name or service not known|CERTIFICATE_VERIFY_FAILED",
    re.I,
)

# MSAL's words when the tenant's OpenID configuration does not exist (an unknown tenant id).
_UNKNOWN_TENANT = re.compile(r"Unable to get authority configuration", re.I)

_SECRETISH = re.compile(r"(client_secret|assertion|access_token|password)=[^&\s]+", re.I)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _SECRETISH.sub(r"\1=<redacted>", line)[:300]


def explain_token_failure(description: str, exc: BaseException) -> CredentialError:
    """One CredentialError for a failed token request by the credential `description`."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from azure.identity import CredentialUnavailableError

    text = str(exc)
    match = re.search(r"AADSTS(\d+)", text)
    if match and match.group(1) in _AAD_CODES:
        meaning, fix = _AAD_CODES[match.group(1)]
        return CredentialError(f"{description}: {meaning} (AADSTS{match.group(1)})", fix)
    if _UNKNOWN_TENANT.search(text):
        return CredentialError(
            f"{description}: the authority does not know this tenant ({_first_line(text)})",
            "set AZURE_TENANT_ID / tenant_id= to the directory (tenant) id the identity lives in "
            "(`az account show --query tenantId`), and check the authority (AZURE_AUTHORITY_HOST)",
        )
    if isinstance(exc, CredentialUnavailableError):
        return CredentialError(
            f"{description} is unavailable: {_first_line(text)}", _fix_for(description)
        )
    if isinstance(exc, ServiceRequestError) or _UNREACHABLE.search(text):
        return CredentialError(
            f"{description} could not reach its token endpoint: {_first_line(text)}",
            "check the authority host (AZURE_AUTHORITY_HOST / SPARK_AML_BRIDGE_AUTHORITY), the "
            "network, and for a private authority the CA bundle (SPARK_AML_BRIDGE_CA_BUNDLE)",
        )
    if isinstance(exc, ClientAuthenticationError):
        return CredentialError(
            f"{description} was refused by the authority: {_first_line(text)}",
            _fix_for(description),
        )
    return CredentialError(
        f"{description} failed: {type(exc).__name__}: {_first_line(text)}", _fix_for(description)
    )


def _fix_for(description: str) -> str:
    if "managed identity" in description:
        return (
            "run where a managed identity is assigned (or set IDENTITY_ENDPOINT/IDENTITY_HEADER), "
            "or choose another credential with SPARK_AML_BRIDGE_CREDENTIAL"
        )
    if "Azure CLI" in description:
        return "run `az login` (or choose another credential with SPARK_AML_BRIDGE_CREDENTIAL)"
    return (
        "check the service principal settings "
        "(AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
    )
