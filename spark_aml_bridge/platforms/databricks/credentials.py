"""Databricks credential sources. Every token request goes through an azure-identity credential
(or the runtime's own credential object), built with the authority and CA of the settings.

- ``databricks-secret-scope``: a service principal whose client secret is read on the driver with
  ``dbutils.secrets.get(scope, key)`` (scope and key: settings ``databricks_secret_scope`` and
  ``databricks_secret_key``, or ``databricks-secret-scope:<scope>/<key>``).
- ``databricks-env``: a service principal from ``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/
  ``AZURE_CLIENT_SECRET`` as cluster configuration sets them with ``{{secrets/<scope>/<key>}}``
  references (Databricks substitutes the value when the cluster starts, on every node).
- ``databricks-service-credential``: a Unity Catalog service credential (an access connector's
  managed identity): ``dbutils.credentials.getServiceCredentialsProvider(name)`` on the driver,
  ``databricks.service_credentials.getServiceCredentialsProvider(name)`` in executors.
- ``databricks-passthrough``: the legacy Azure AD passthrough token of the notebook user
  (``getContext().adlsAadToken()``), its expiry read from the JWT. Deprecated by Databricks.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from spark_aml_bridge.credentials.identity import service_principal, token_claims
from spark_aml_bridge.credentials.sources import (
    BuiltCredential,
    CredentialSource,
    CredentialUnavailable,
    SourceContext,
)
from spark_aml_bridge.errors import CredentialError

_log = logging.getLogger(__name__)

# Scope and key names: letters, digits, '-', '_', '.' (and '@' in some scopes), at most 128.
SECRET_REFERENCE = re.compile(
    r"^\{\{secrets/(?P<scope>[\w.@-]{1,128})/(?P<key>[\w.@-]{1,128})\}\}$", re.ASCII
)
_SP_ENV = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
_ARM_AUDIENCES = {
    "https://management.azure.com",
    "https://management.core.windows.net",
}


def is_secret_reference(value: str | None) -> bool:
    return bool(value) and SECRET_REFERENCE.match(str(value).strip()) is not None


def _on_executor() -> bool:
    from spark_aml_bridge.spark_state import task_context

    return task_context() is not None


def _dbutils_or_why() -> tuple[Any | None, str]:
    from spark_aml_bridge.platforms.databricks.runtime import find_dbutils

    if _on_executor():
        return None, "dbutils is available on the Spark driver only, not in executors"
    dbutils = find_dbutils()
    if dbutils is None:
        return None, (
            "no dbutils here (it exists in Databricks notebooks and jobs, in the notebook's "
            "namespace or through databricks.sdk.runtime)"
        )
    return dbutils, ""


def _sp_credential(
    context: SourceContext,
    tenant_id: str,
    client_id: str,
    secret: str,
    *,
    source: str,
    origin: str,
    executor_reusable: bool = False,
) -> BuiltCredential:
    return service_principal(
        context,
        tenant_id,
        client_id,
        secret=secret,
        origin=origin,
        source=source,
        executor_reusable=executor_reusable,
    )


# -- secret scope ----------------------------------------------------------------------------------


def read_secret(dbutils: Any, scope: str, key: str, what: str) -> str:
    """``dbutils.secrets.get(scope, key)``, or one CredentialError naming scope, key and the fix."""
    try:
        value = dbutils.secrets.get(scope=scope, key=key)
    except Exception as exc:  # noqa: BLE001 - py4j/ExecutionError wrap Java exceptions
        raise _secret_error(dbutils, scope, key, what, exc) from None
    if value is None or value == "":
        raise CredentialError(
            f"the secret '{key}' in Databricks secret scope '{scope}' ({what}) is empty",
            f"databricks secrets put-secret {scope} {key}",
        )
    return value


def _secret_error(dbutils: Any, scope: str, key: str, what: str, exc: BaseException) -> Exception:
    text = str(exc)
    if "PERMISSION_DENIED" in text or "does not have READ permission" in text:
        return CredentialError(
            f"this user may not read Databricks secret scope '{scope}' (key '{key}', {what})",
            f"grant read access: databricks secrets put-acl {scope} <user-or-group> READ",
        )
    if "does not exist" in text or "RESOURCE_DOES_NOT_EXIST" in text:
        if not _scope_exists(dbutils, scope):
            return CredentialError(
                f"Databricks secret scope '{scope}' does not exist (looking for key '{key}', "
                f"{what})",
                f"databricks secrets create-scope {scope} && "
                f"databricks secrets put-secret {scope} {key}",
            )
        return CredentialError(
            f"Databricks secret scope '{scope}' has no key '{key}' ({what})",
            f"databricks secrets put-secret {scope} {key} "
            f"(or set the key's name with SPARK_AML_BRIDGE_DATABRICKS_SECRET_KEY)",
        )
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return CredentialError(
        f"reading key '{key}' of Databricks secret scope '{scope}' ({what}) failed: {first}",
        f"check with `databricks secrets list-secrets {scope}` that the key exists and that this "
        "user can read the scope",
    )


def _scope_exists(dbutils: Any, scope: str) -> bool:
    try:
        return any(getattr(s, "name", s) == scope for s in dbutils.secrets.listScopes())
    except Exception:  # noqa: BLE001 - cannot tell: report the key as missing
        return True


def _build_secret_scope(context: SourceContext, arg: str | None) -> BuiltCredential:
    config, env = context.config, context.environ
    scope, key = config.databricks_secret_scope, config.databricks_secret_key
    if arg:
        scope, _, key_part = arg.partition("/")
        key = key_part or key
    if not scope:
        raise CredentialUnavailable(
            "no secret scope is configured (SPARK_AML_BRIDGE_DATABRICKS_SECRET_SCOPE or "
            "databricks_secret_scope=)"
        )
    if not key:
        raise CredentialUnavailable(
            "no secret key is configured (SPARK_AML_BRIDGE_DATABRICKS_SECRET_KEY)"
        )
    dbutils, why = _dbutils_or_why()
    if dbutils is None:
        raise CredentialUnavailable(why)
    tenant_id = config.tenant_id or env.get("AZURE_TENANT_ID")
    client_id = config.client_id or env.get("AZURE_CLIENT_ID")
    if not tenant_id and config.databricks_tenant_id_key:
        tenant_id = read_secret(dbutils, scope, config.databricks_tenant_id_key, "the tenant id")
    if not client_id and config.databricks_client_id_key:
        client_id = read_secret(dbutils, scope, config.databricks_client_id_key, "the client id")
    missing = [n for n, v in (("tenant id", tenant_id), ("client id", client_id)) if not v]
    if missing:
        raise CredentialError(
            f"the service principal's {' and '.join(missing)} for secret scope '{scope}' "
            "is not set",
            "set tenant_id= and client_id= (or AZURE_TENANT_ID/AZURE_CLIENT_ID), or name keys of "
            "the scope holding them with databricks_tenant_id_key= / databricks_client_id_key=",
        )
    secret = read_secret(dbutils, scope, key, "the client secret")
    return _sp_credential(
        context,
        str(tenant_id),
        str(client_id),
        secret,
        source="databricks-secret-scope",
        origin=f"from Databricks secret scope '{scope}'",
    )


# -- env vars from cluster configuration -----------------------------------------------------------


def _unresolved_reference_error(name: str, value: str) -> CredentialError:
    match = SECRET_REFERENCE.match(value.strip())
    scope, key = (match["scope"], match["key"]) if match else ("<scope>", "<key>")
    return CredentialError(
        f"{name} holds the literal secret reference {value.strip()}: Databricks did not "
        "substitute it. It does so only for references in the cluster's configuration "
        "(Environment variables / spark_env_vars), and only when the cluster starts",
        f"put {name}={{{{secrets/{scope}/{key}}}}} in the cluster's environment variables (not in "
        f"an init script or notebook), check the secret exists (databricks secrets list-secrets "
        f"{scope}) and the cluster owner can read it, then restart the cluster",
    )


def launch_environment() -> dict[str, str] | None:
    """The environment this process was started with (Linux), before any code changed it."""
    try:
        with open(f"/proc/{os.getpid()}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _set_at_launch(
    environ: dict[str, str],
    names: Iterable[str],
    reader: Callable[[], dict[str, str] | None] = launch_environment,
) -> bool:
    """Whether `names` have the values this process was launched with, i.e. came from the cluster
    environment (every node gets it) rather than from code in this process (which workers miss)."""
    launched = reader()
    if launched is None:
        return False
    return all(launched.get(n) == environ.get(n) for n in names)


def _build_env(context: SourceContext, arg: str | None) -> BuiltCredential:
    from spark_aml_bridge.platforms.databricks.runtime import runtime_version

    env = context.environ
    values = {name: env.get(name) for name in _SP_ENV}
    for name, value in values.items():
        if value and is_secret_reference(value):
            raise _unresolved_reference_error(name, value)
    tenant_id, client_id, secret = (values[n] for n in _SP_ENV)
    missing = [n for n in _SP_ENV if not values[n]]
    if missing:
        raise CredentialUnavailable(
            f"{', '.join(missing)} not set (set them in the cluster's environment variables, the "
            "secret as AZURE_CLIENT_SECRET={{secrets/<scope>/<key>}})"
        )
    on_databricks = runtime_version(env)[0] is not None
    reusable = on_databricks and _set_at_launch(env, _SP_ENV)
    return _sp_credential(
        context,
        str(tenant_id),
        str(client_id),
        str(secret),
        source="databricks-env",
        origin="from the cluster environment" if reusable else "from env",
        executor_reusable=reusable,
    )


# -- Unity Catalog service credential --------------------------------------------------------------


def _service_credential_error(name: str, exc: BaseException) -> CredentialError:
    text = str(exc).strip()
    first = text.splitlines()[0][:240] if text else type(exc).__name__
    if "PERMISSION_DENIED" in text or ("ACCESS" in text and "privilege" in text.lower()):
        fix = f"GRANT ACCESS ON SERVICE CREDENTIAL `{name}` TO `<user-or-group>`"
    elif "NOT_FOUND" in text or "does not exist" in text:
        fix = (
            "check the name with SHOW SERVICE CREDENTIALS (or set "
            "SPARK_AML_BRIDGE_DATABRICKS_SERVICE_CREDENTIAL to an existing one)"
        )
    else:
        fix = (
            f"check that service credential '{name}' exists (SHOW SERVICE CREDENTIALS), that you "
            f"have ACCESS on it (GRANT ACCESS ON SERVICE CREDENTIAL `{name}` TO `<user>`), and "
            "that the compute runs Databricks Runtime 15.4 LTS or later with Unity Catalog"
        )
    return CredentialError(f"Unity Catalog service credential '{name}': {first}", fix)


class ServiceCredentialTokenCredential:
    """A TokenCredential over the runtime's service-credential provider object."""

    def __init__(self, name: str, get_provider: Callable[[], Any]) -> None:
        self.name = name
        self._get_provider = get_provider
        self._provider: Any = None

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        try:
            if self._provider is None:
                self._provider = self._get_provider()
            token = self._provider.get_token(*scopes, **kwargs)
        except CredentialError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime's errors, explained
            raise _service_credential_error(self.name, exc) from None
        return AccessToken(token.token, int(token.expires_on))

    def __repr__(self) -> str:
        return f"ServiceCredentialTokenCredential({self.name!r})"


def _provider_getter(name: str) -> tuple[Callable[[], Any], str]:
    """How to get the named provider here: dbutils on the driver, the UDF API in executors."""
    if not _on_executor():
        dbutils, _ = _dbutils_or_why()
        credentials = getattr(dbutils, "credentials", None) if dbutils is not None else None
        if credentials is not None and hasattr(credentials, "getServiceCredentialsProvider"):
            return (lambda: credentials.getServiceCredentialsProvider(name)), "driver"
    try:
        from databricks.service_credentials import getServiceCredentialsProvider
    except ImportError:
        raise CredentialUnavailable(
            "the Unity Catalog service credential API is not available here (it needs Databricks "
            "Runtime 15.4 LTS or later with Unity Catalog; executors use "
            "databricks.service_credentials)"
        ) from None
    return (lambda: getServiceCredentialsProvider(name)), "executor"


def _build_service_credential(context: SourceContext, arg: str | None) -> BuiltCredential:
    name = arg or context.config.databricks_service_credential
    if not name:
        raise CredentialUnavailable(
            "no service credential is configured (SPARK_AML_BRIDGE_DATABRICKS_SERVICE_CREDENTIAL "
            "or databricks_service_credential=)"
        )
    getter, where = _provider_getter(name)
    try:
        first = getter()  # fail here, naming the credential, rather than at the first token
    except Exception as exc:  # noqa: BLE001
        raise _service_credential_error(name, exc) from None
    handed = [first]

    def get_provider() -> Any:
        return handed.pop() if handed else getter()

    return BuiltCredential(
        factory=lambda: ServiceCredentialTokenCredential(name, get_provider),
        description=f"Unity Catalog service credential '{name}' ({where})",
        source="databricks-service-credential",
        cache_key=("uc-service-credential", name),
        # Executors get their own provider through databricks.service_credentials; no secret
        # travels. Only the name (a setting) is shipped.
        executor_reusable=True,
    )


# -- legacy credential passthrough -----------------------------------------------------------------


def _passthrough_option(dbutils: Any) -> Any:
    from spark_aml_bridge.platforms.databricks.runtime import command_context, option_value

    ctx = command_context(dbutils)
    if ctx is None:
        return None
    try:
        return option_value(ctx.adlsAadToken())
    except Exception:  # noqa: BLE001 - no passthrough on this cluster
        return None


class PassthroughTokenCredential:
    """The notebook user's Azure AD passthrough token, read afresh on every request."""

    _warned_audience = False
    _lock = threading.Lock()

    def __init__(self, read: Callable[[], str | None]) -> None:
        self._read = read

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        token = self._read()
        if not token:
            raise CredentialError(
                "the Azure AD passthrough token is no longer available on this cluster",
                "use a service principal (databricks-secret-scope) or a Unity Catalog service "
                "credential instead of credential passthrough",
            )
        claims = token_claims(token)
        try:
            expires_on = int(claims["exp"])
        except (KeyError, TypeError, ValueError):
            raise CredentialError(
                "the Azure AD passthrough token has no readable expiry (exp claim)",
                "use a service principal or a Unity Catalog service credential instead",
            ) from None
        if expires_on <= time.time():
            raise CredentialError(
                "the Azure AD passthrough token has expired and Databricks has not renewed it",
                "re-run the cell (Databricks renews the token per command), or use a service "
                "principal or a Unity Catalog service credential for long runs",
            )
        self._check_audience(claims)
        return AccessToken(token, expires_on)

    @classmethod
    def _check_audience(cls, claims: dict[str, Any]) -> None:
        # VERIFY: the passthrough token's audience is not documented; tell once if not ARM.
        audience = str(claims.get("aud", "")).rstrip("/")
        if audience in _ARM_AUDIENCES:
            return
        with cls._lock:
            if cls._warned_audience:
                return
            cls._warned_audience = True
        _log.warning(
            "the passthrough token's audience is %r, not Azure Resource Manager; the workspace "
            "may refuse it (use a service principal or a service credential if it does)",
            audience,
        )

    def __repr__(self) -> str:
        return "PassthroughTokenCredential()"


def _build_passthrough(context: SourceContext, arg: str | None) -> BuiltCredential:
    dbutils, why = _dbutils_or_why()
    if dbutils is None:
        raise CredentialUnavailable(why)
    token = _passthrough_option(dbutils)
    if not token:
        raise CredentialUnavailable(
            "this cluster has no Azure AD credential passthrough token (passthrough is deprecated "
            "and needs a passthrough-enabled cluster)"
        )
    claims = token_claims(token)
    return BuiltCredential(
        factory=lambda: PassthroughTokenCredential(lambda: _passthrough_option(dbutils)),
        description="Azure AD credential passthrough of the notebook user",
        source="databricks-passthrough",
        cache_key=("passthrough", claims.get("tid"), claims.get("oid")),
    )


# Databricks' credential sources, by name (platforms/registry.py gathers every platform's).
SOURCES: tuple[CredentialSource, ...] = (
    CredentialSource(
        "databricks-secret-scope",
        "service principal whose secret is in a Databricks secret scope (dbutils.secrets.get)",
        (
            "databricks_secret_scope (SPARK_AML_BRIDGE_DATABRICKS_SECRET_SCOPE)",
            "databricks_secret_key",
            "tenant_id and client_id (or AZURE_TENANT_ID/AZURE_CLIENT_ID, or *_key settings)",
            "a Databricks notebook or job driver",
        ),
        _build_secret_scope,
    ),
    CredentialSource(
        "databricks-env",
        "service principal from AZURE_* env vars set by the cluster's configuration",
        (
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET={{secrets/<scope>/<key>}} in the cluster's environment variables",
        ),
        _build_env,
    ),
    CredentialSource(
        "databricks-service-credential",
        "Unity Catalog service credential (an access connector's managed identity)",
        (
            "databricks_service_credential (SPARK_AML_BRIDGE_DATABRICKS_SERVICE_CREDENTIAL)",
            "ACCESS on the service credential",
            "Databricks Runtime 15.4 LTS or later",
        ),
        _build_service_credential,
    ),
    CredentialSource(
        "databricks-passthrough",
        "Azure AD credential passthrough token of the notebook user (legacy, deprecated)",
        ("a passthrough-enabled cluster", "a Databricks notebook driver"),
        _build_passthrough,
    ),
)
