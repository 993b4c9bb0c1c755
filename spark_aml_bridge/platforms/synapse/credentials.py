"""Credential sources of Synapse (and Fabric) Spark: the runtime's own tokens, and a service
principal whose secret the runtime reads from Key Vault.

* ``notebookutils``: ``credentials.getToken("AzureManagement")`` of the notebook utilities
  (``notebookutils`` / ``mssparkutils``): the user in interactive notebooks, the workspace managed
  identity in pipelines and batch jobs.
* ``token-library``: where the notebook utilities are missing (e.g. a Spark job definition's
  Python driver), the JVM ``TokenLibrary.getAccessToken`` through py4j on the active session.
* ``key-vault-sp``: a service principal (``tenant_id``, ``client_id``) whose secret is read with
  ``getSecretWithLS(<linked service>, <secret>)`` / ``getSecret(<vault>, <secret>[, <linked
  service>])``. Only names are settings; the value lives in this process's memory only.

All three work on the driver only; spark.py relays the driver's token to executors. They are
wrapped as azure-core ``TokenCredential``s, so the bridge's token cache asks them again only
shortly before the token's own expiry (its JWT ``exp``), never per MLflow request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from spark_aml_bridge.credentials.identity import (
    fingerprint,
    service_principal,
    short_id,
    token_claims,
)
from spark_aml_bridge.credentials.sources import (
    BuiltCredential,
    CredentialSource,
    CredentialUnavailable,
    SourceContext,
)
from spark_aml_bridge.errors import CredentialError
from spark_aml_bridge.platforms.synapse.signals import notebook_utils

_log = logging.getLogger(__name__)

# What does not work on Fabric, one sentence each (errors and docs quote them; fabric.py lists
# them with the rest).
ARM_TOKEN_UNSUPPORTED = (
    "Fabric's notebookutils documents no Azure Resource Manager audience, so where "
    "getToken('AzureManagement') fails use a service principal instead (key_vault and "
    "client_secret_name, or the AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET env vars)."
)
TOKEN_LIBRARY_UNSUPPORTED = (
    "The JVM token library path is Synapse's only (Fabric's lives in another package and is not "
    "used); on Fabric the bridge reads tokens through notebookutils."
)

ARM_AUDIENCE = "AzureManagement"
# Sources that exist on the driver only (executors get the driver's token relayed instead).
DRIVER_ONLY_SOURCES = ("notebookutils", "token-library", "key-vault-sp")
TOKEN_LIBRARY_CLASS = "com.microsoft.azure.synapse.tokenlibrary.TokenLibrary"
# The token library's audiences are names, not URLs ("Audience has invalid characters" for URLs).
# Scope host (prefix) -> audience, for azure-core clients that share a credential.
_SCOPE_AUDIENCES = (
    ("management.", ARM_AUDIENCE),
    ("dev.azuresynapse", "Synapse"),
    ("vault.", "Vault"),
    ("storage.azure.com", "Storage"),
    ("database.windows.net", "DW"),
    ("datafactory.azure.net", "ADF"),
)
# When a token carries no `exp` and the runtime gives no expiry: assume a short life.
_FALLBACK_LIFETIME = 600.0
_DRIVER_ONLY = (
    "driver only: Spark executors have no notebook utilities nor JVM gateway (the driver relays "
    "its token to them)"
)


def audience_for_scope(scope: str, default: str) -> str:
    """The token-library audience for an azure-identity scope (ARM scopes -> `default`)."""
    host = urlsplit(scope if "://" in scope else f"https://{scope}").netloc.lower()
    for prefix, audience in _SCOPE_AUDIENCES:
        if host.startswith(prefix) or prefix in host:
            return default if audience == ARM_AUDIENCE else audience
    return default


def token_identity(claims: dict[str, Any]) -> str:
    """Who a token is for, from its claims (never the token): user, managed identity or app."""
    upn = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
    if upn or claims.get("idtyp") == "user":
        return f"user {upn or short_id(claims.get('oid'))}"
    mirid = str(claims.get("xms_mirid") or "")
    if mirid:
        name = mirid.rstrip("/").rsplit("/", 1)[-1]
        if "/microsoft.synapse/workspaces/" in mirid.lower():
            # A Synapse workspace's managed identity carries the workspace's name.
            return f"Synapse workspace managed identity {name}"
        return f"managed identity {name}"
    return f"service principal {short_id(claims.get('appid') or claims.get('azp'))}"


def _expiry(token: str, hint: Any = None) -> float:
    """Expiry from the JWT `exp`, else the runtime's expiry (seconds or ms), else a short life."""
    exp = token_claims(token).get("exp")
    if isinstance(exp, (int, float)) and exp > 0:
        return float(exp)
    try:
        value = float(str(hint))
    except (TypeError, ValueError):
        value = 0.0
    if value > 1e11:  # milliseconds
        value /= 1000.0
    if value > time.time():
        return value
    return time.time() + _FALLBACK_LIFETIME


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # py4j wraps the Java error after a first "An error occurred while calling ..." line.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("An error occurred while calling")]
    return ((useful or lines or [type(exc).__name__])[0])[:300]


class RuntimeTokenCredential:
    """A ``TokenCredential`` over a runtime token function (audience -> (token, expiry hint)).

    The first token (fetched while checking the source works) is handed out once, so building
    the credential and the first MLflow call cost a single runtime call.
    """

    def __init__(
        self,
        fetch: Callable[[str], tuple[str, Any]],
        audience: str,
        origin: str,
        first: tuple[str, float] | None = None,
    ) -> None:
        self._fetch = fetch
        self._audience = audience
        self._origin = origin
        self._first = first
        self._lock = threading.Lock()
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        audience = audience_for_scope(scopes[0], self._audience) if scopes else self._audience
        with self._lock:
            first, self._first = self._first, None
        if first is not None and audience == self._audience and first[1] > time.time() + 1:
            return AccessToken(first[0], int(first[1]))
        self.calls += 1
        try:
            token, hint = self._fetch(audience)
        except Exception as exc:  # noqa: BLE001 - the runtime raises py4j and other errors
            raise CredentialError(
                f"{self._origin} could not get a '{audience}' token: {_first_line(exc)}",
                "check that this identity may get tokens here (in a pipeline or job it is the "
                "workspace managed identity), or choose another credential with "
                "SPARK_AML_BRIDGE_CREDENTIAL",
            ) from None
        if not token:
            raise CredentialError(
                f"{self._origin} returned an empty '{audience}' token",
                "run on a Synapse/Fabric Spark runtime (API stubs such as dummy-notebookutils "
                "return no tokens), or choose another credential",
            )
        return AccessToken(token, int(_expiry(token, hint)))

    def __repr__(self) -> str:
        return f"RuntimeTokenCredential({self._origin}, audience={self._audience})"


def _on_executor() -> bool:
    from spark_aml_bridge.spark_state import spark_role

    return spark_role() == "executor"


def _platform() -> str | None:
    from spark_aml_bridge.platforms.synapse.signals import gather_signals

    return gather_signals().classify()


def _runtime_built(
    source: str,
    fetch: Callable[[str], tuple[str, Any]],
    audience: str,
    origin: str,
) -> BuiltCredential:
    """Fetch one token to prove the source works here, and describe whose it is."""
    try:
        token, hint = fetch(audience)
    except Exception as exc:  # noqa: BLE001 - any runtime failure means "not usable here"
        reason = f"{origin}('{audience}') failed: {_first_line(exc)}"
        if _platform() == "fabric" and audience == ARM_AUDIENCE:
            reason += ". " + ARM_TOKEN_UNSUPPORTED
        raise CredentialUnavailable(reason) from None
    if not token:
        raise CredentialUnavailable(
            f"{origin}('{audience}') returned no token (an API stub such as dummy-notebookutils?)"
        )
    claims = token_claims(token)
    who = token_identity(claims)
    first = (token, _expiry(token, hint))
    return BuiltCredential(
        factory=lambda: RuntimeTokenCredential(fetch, audience, origin, first),
        description=f"{origin}('{audience}') as {who}",
        source=source,
        cache_key=(source, audience, claims.get("tid"), claims.get("oid") or fingerprint(token)),
    )


# --- notebookutils / mssparkutils ---------------------------------------------------------------


def _build_notebookutils(context: SourceContext, arg: str | None) -> BuiltCredential:
    if _on_executor():
        raise CredentialUnavailable(_DRIVER_ONLY)
    credentials = notebook_utils("credentials")
    if credentials is None or not hasattr(credentials, "getToken"):
        raise CredentialUnavailable(
            "the notebook utilities (notebookutils/mssparkutils) are not importable here "
            "(not a Synapse or Fabric notebook runtime)"
        )

    def fetch(audience: str) -> tuple[str, Any]:
        return str(credentials.getToken(audience) or ""), None

    return _runtime_built(
        "notebookutils", fetch, arg or ARM_AUDIENCE, "notebookutils credentials.getToken"
    )


# --- the JVM token library ----------------------------------------------------------------------


def _token_library() -> Any:
    from spark_aml_bridge.spark_state import active_session

    session = active_session()
    if session is None:
        raise CredentialUnavailable(
            "no active Spark session (the token library is reached through the driver's JVM)"
        )
    try:
        target: Any = session.sparkContext._jvm
    except Exception:  # noqa: BLE001 - Spark Connect has no JVM gateway here
        raise CredentialUnavailable(
            "this Spark session has no JVM gateway (Spark Connect?)"
        ) from None
    for part in TOKEN_LIBRARY_CLASS.split("."):
        target = getattr(target, part)
    if type(target).__name__ == "JavaPackage":  # py4j's answer for a class the JVM lacks
        raise CredentialUnavailable(
            f"the JVM has no {TOKEN_LIBRARY_CLASS} (not a Synapse Spark runtime)"
        )
    return target


def _build_token_library(context: SourceContext, arg: str | None) -> BuiltCredential:
    if _on_executor():
        raise CredentialUnavailable(_DRIVER_ONLY)
    if _platform() == "fabric":
        raise CredentialUnavailable(TOKEN_LIBRARY_UNSUPPORTED)
    library = _token_library()

    def fetch(audience: str) -> tuple[str, Any]:
        resource = json.dumps({"audience": audience, "name": ""})
        access = library.getAccessToken(resource)
        return str(access.token() or ""), access.expireTime()

    return _runtime_built(
        "token-library", fetch, arg or ARM_AUDIENCE, "TokenLibrary.getAccessToken"
    )


# --- a service principal whose secret comes from Key Vault --------------------------------------


def _vault_argument(vault: str, platform: str | None) -> str:
    """Synapse's getSecret takes the vault's name; Fabric's takes its URL."""
    if platform == "fabric":
        return vault if "://" in vault else f"https://{vault}.vault.azure.net/"
    if "://" in vault:
        return urlsplit(vault).netloc.split(".", 1)[0]
    return vault


def _secret_failure(
    exc: BaseException, secret: str, vault: str | None, linked_service: str | None
) -> CredentialError:
    text = str(exc)
    lowered = text.lower()
    where = f"linked service '{linked_service}'" if linked_service else f"Key Vault '{vault}'"
    reader = (
        "the Synapse workspace managed identity"
        if linked_service
        else "your user account (or the identity running this job)"
    )
    missing_secret = "secretnotfound" in lowered or (
        "secret" in lowered and "not found" in lowered and "linked" not in lowered
    )
    if missing_secret:
        return CredentialError(
            f"there is no secret '{secret}' in the vault behind {where}",
            "store the service principal's client secret there under that name, or set "
            "client_secret_name (SPARK_AML_BRIDGE_CLIENT_SECRET_NAME / "
            "spark.aml.bridge.clientSecretName) to the secret's name",
        )
    if linked_service and "linked" in lowered and ("not found" in lowered or "notfound" in lowered):
        return CredentialError(
            f"the linked service '{linked_service}' does not exist in this Synapse workspace",
            f"create an Azure Key Vault linked service named '{linked_service}' (Manage > Linked "
            "services) or set key_vault_linked_service (SPARK_AML_BRIDGE_KEY_VAULT_LINKED_SERVICE "
            "/ spark.aml.bridge.keyVaultLinkedService) to an existing one",
        )
    if "forbidden" in lowered or "does not have secrets get permission" in lowered or "403" in text:
        return CredentialError(
            f"reading secret '{secret}' through {where} was refused: {_first_line(exc)}",
            f"grant {reader} the 'Key Vault Secrets User' role on the vault (or a 'Get' secret "
            "access policy)",
        )
    return CredentialError(
        f"reading secret '{secret}' through {where} failed: {_first_line(exc)}",
        "check the Key Vault settings (key_vault, key_vault_linked_service, client_secret_name) "
        "with `spark-aml-bridge doctor`",
    )


def _build_key_vault_sp(context: SourceContext, arg: str | None) -> BuiltCredential:
    config, env = context.config, context.environ
    secret_name = config.client_secret_name
    vault, linked_service = config.key_vault, config.key_vault_linked_service
    if not secret_name:
        raise CredentialUnavailable(
            "no Key Vault secret is configured (client_secret_name, with key_vault_linked_service "
            "or key_vault)"
        )
    if not vault and not linked_service:
        raise CredentialError(
            f"client_secret_name is '{secret_name}' but no Key Vault is named",
            "set key_vault_linked_service (SPARK_AML_BRIDGE_KEY_VAULT_LINKED_SERVICE) or "
            "key_vault (SPARK_AML_BRIDGE_KEY_VAULT)",
        )
    tenant_id = config.tenant_id or env.get("AZURE_TENANT_ID")
    client_id = config.client_id or env.get("AZURE_CLIENT_ID")
    missing = [n for n, v in (("tenant_id", tenant_id), ("client_id", client_id)) if not v]
    if missing:
        raise CredentialError(
            f"the Key Vault service principal needs {' and '.join(missing)}",
            "set "
            + ", ".join(f"SPARK_AML_BRIDGE_{n.upper()}" for n in missing)
            + " (or "
            + ", ".join(
                f"spark.aml.bridge.{'tenantId' if n == 'tenant_id' else 'clientId'}"
                for n in missing
            )
            + " in the pool's Spark configuration)",
        )
    if _on_executor():
        raise CredentialUnavailable(_DRIVER_ONLY)
    credentials = notebook_utils("credentials")
    if credentials is None:
        raise CredentialUnavailable(
            "the notebook utilities (notebookutils/mssparkutils) are not importable here, so "
            "Key Vault cannot be read through them"
        )
    platform = _platform()
    vault_arg = _vault_argument(vault, platform) if vault else None
    try:
        if linked_service and not vault_arg:
            secret = credentials.getSecretWithLS(linked_service, secret_name)
        elif linked_service:
            secret = credentials.getSecret(vault_arg, secret_name, linked_service)
        else:
            secret = credentials.getSecret(vault_arg, secret_name)
    except Exception as exc:  # noqa: BLE001 - py4j and runtime errors: explained, not echoed
        raise _secret_failure(exc, secret_name, vault, linked_service) from None
    secret = str(secret or "")
    if not secret:
        raise CredentialError(
            f"Key Vault secret '{secret_name}' is empty",
            "store the service principal's client secret value in it",
        )
    via = f"linked service {linked_service}" if linked_service else f"Key Vault {vault}"
    return service_principal(
        context,
        tenant_id,
        client_id,
        secret=secret,
        origin=f"with its secret '{secret_name}' from {via}",
        source="key-vault-sp",
    )


# Synapse's (and Fabric's) credential sources (platforms/registry.py gathers every platform's).
SOURCES: tuple[CredentialSource, ...] = (
    CredentialSource(
        "notebookutils",
        "the Synapse/Fabric notebook utilities' ARM token (credentials.getToken)",
        (),
        _build_notebookutils,
    ),
    CredentialSource(
        "token-library",
        "the Synapse JVM token library's ARM token (TokenLibrary.getAccessToken)",
        (),
        _build_token_library,
    ),
    CredentialSource(
        "key-vault-sp",
        "service principal whose secret the Synapse/Fabric runtime reads from Key Vault",
        (
            "tenant_id",
            "client_id",
            "client_secret_name",
            "key_vault_linked_service or key_vault",
        ),
        _build_key_vault_sp,
    ),
)
