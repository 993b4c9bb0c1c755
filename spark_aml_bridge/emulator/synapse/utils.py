"""The notebook utilities of the Synapse runtime double: what ``notebookutils``/``mssparkutils``
and the JVM ``TokenLibrary`` answer on a Synapse (or Fabric) driver, backed by the emulator.

Emulated, after the public docs (apache-spark-secure-credentials-with-tokenlibrary,
microsoft-spark-utilities, Fabric's notebookutils pages):

* ``credentials.getToken(audience, name="")``: audience *names* (Synapse: ``AzureManagement``,
  ``Storage``, ``Vault``, ``DW``, ``Synapse``, ...; Fabric: ``storage``, ``pbi``, ``keyvault``,
  ``kusto``); a URL is refused ("Audience has invalid characters"). Tokens are real: each call
  asks the emulator's token endpoint (its managed identity endpoint for the workspace managed
  identity, or client credentials for its service principal), so the emulator's stats count them.
* ``credentials.getSecret(akvName, secret[, linkedService])`` and ``getSecretWithLS(linkedService,
  secret)`` over a small in-memory vault, failing with Key Vault's error codes (``SecretNotFound``,
  ``Forbidden``) or a missing linked service.
* ``env.get*()`` and ``runtime.context`` from the double's state.
* ``TokenLibrary.getAccessToken('{"audience": ..., "name": ""}')`` returning an object with
  ``token()`` and ``expireTime()``, reachable through ``sparkContext._jvm`` (see runtime.py).

Not emulated: user (delegated) tokens — the emulator's directory has no users, so "the user" of an
interactive notebook is stood in for by the emulator's service principal or managed identity —,
the runtime's own token caching, the wording of py4j's wrapper around Java errors (only the inner
Key Vault texts follow Key Vault's documented errors), and every verb outside tokens, secrets, env
and runtime context.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

STATE_ENV = "_SPARK_AML_BRIDGE_SYNAPSE_DOUBLE"

SYNAPSE_AUDIENCES = {
    "azuremanagement": "https://management.azure.com/",
    "storage": "https://storage.azure.com/",
    "vault": "https://vault.azure.net",
    "dw": "https://database.windows.net/",
    "synapse": "https://dev.azuresynapse.net",
    "datalakestore": "https://datalake.azure.net/",
    "adf": "https://datafactory.azure.net/",
    "azuredataexplorer": "https://kusto.kusto.windows.net",
}
FABRIC_AUDIENCES = {
    "storage": "https://storage.azure.com/",
    "pbi": "https://analysis.windows.net/powerbi/api",
    "keyvault": "https://vault.azure.net",
    "kusto": "https://kusto.kusto.windows.net",
}

_lock = threading.Lock()
calls: Counter[str] = Counter()  # per process: how often each verb was called


class NotebookUtilsError(RuntimeError):
    """What the runtime raises; on Synapse a py4j error whose text carries the Java error."""

    def __init__(self, verb: str, message: str) -> None:
        super().__init__(
            f"An error occurred while calling z:mssparkutils.credentials.{verb}.\n: {message}"
        )


def state() -> dict[str, Any]:
    path = os.environ.get(STATE_ENV)
    if not path:
        raise NotebookUtilsError(
            "getToken", f"the Synapse runtime double is not active ({STATE_ENV} is not set)"
        )
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _count(verb: str) -> None:
    with _lock:
        calls[verb] += 1


def _resource_for(audience: str, current: dict[str, Any], verb: str) -> str:
    if "://" in audience or "/" in audience:
        raise NotebookUtilsError(
            verb, "java.lang.IllegalArgumentException: Audience has invalid characters"
        )
    table = FABRIC_AUDIENCES if current["flavour"] == "fabric" else SYNAPSE_AUDIENCES
    if current["flavour"] == "fabric" and current.get("arm_audience"):
        table = {**table, "azuremanagement": SYNAPSE_AUDIENCES["azuremanagement"]}
    resource = table.get(audience.strip().lower())
    if resource is None:
        raise NotebookUtilsError(
            verb,
            f"java.lang.IllegalArgumentException: Unsupported audience '{audience}'; use one of "
            + ", ".join(sorted(table)),
        )
    return resource


def _issue(resource: str, current: dict[str, Any], verb: str) -> tuple[str, int]:
    """A real token from the emulator for `resource`, as the runtime's identity."""
    import requests

    emulator = current["emulator"]
    verify = emulator["ca_bundle"]
    if current["identity"] == "managed-identity":
        response = requests.get(
            emulator["managed_identity_endpoint"],
            params={"api-version": "2019-08-01", "resource": resource},
            headers={"X-IDENTITY-HEADER": emulator["managed_identity_header"]},
            verify=verify,
            timeout=30,
        )
        body = response.json()
        if response.status_code != 200:
            raise NotebookUtilsError(verb, f"TokenServiceException: {body.get('message')}")
        return body["access_token"], int(body["expires_on"])
    response = requests.post(
        f"{emulator['authority']}/{emulator['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator["client_id"],
            "client_secret": emulator["client_secret"],
            "scope": resource.rstrip("/") + "/.default",
        },
        verify=verify,
        timeout=30,
    )
    body = response.json()
    if response.status_code != 200:
        first = str(body.get("error_description", "")).split(" Trace ID:")[0]
        raise NotebookUtilsError(verb, f"TokenServiceException: {first}")
    return body["access_token"], int(time.time()) + int(body["expires_in"])


# --- credentials ------------------------------------------------------------------------------


def get_token(audience: str, name: str = "") -> str:
    _count("getToken")
    current = state()
    token, _ = _issue(_resource_for(audience, current, "getToken"), current, "getToken")
    return token


def is_valid_token(token: str) -> bool:
    from spark_aml_bridge.credentials.identity import token_claims

    return float(token_claims(token).get("exp", 0)) > time.time()


def _vault_name(akv: str) -> str:
    if "://" in akv:
        return akv.split("://", 1)[1].split(".", 1)[0]
    return akv


def _read_secret(vault: str, secret: str, current: dict[str, Any], reader: str, verb: str) -> str:
    vaults = current.get("vaults", {})
    if vault not in vaults:
        raise NotebookUtilsError(
            verb,
            f"java.net.UnknownHostException: {vault}.vault.azure.net: Name or service not known",
        )
    allowed = current.get("vault_readers", {}).get(vault, ["workspace", "user"])
    if reader not in allowed:
        who = "the workspace managed identity" if reader == "workspace" else "the user"
        raise NotebookUtilsError(
            verb,
            "com.azure.core.exception.HttpResponseException: Status code 403, "
            '"{"error":{"code":"Forbidden","message":"The user, group or application '
            f"'{who}' does not have secrets get permission on key vault '{vault};location=local'."
            '"}}"',
        )
    value = vaults[vault].get(secret)
    if value is None:
        raise NotebookUtilsError(
            verb,
            "com.azure.core.exception.ResourceNotFoundException: Status code 404, "
            '"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) '
            f"{secret} was not found in this key vault."
            '"}}"',
        )
    return value


def _linked_vault(linked_service: str, current: dict[str, Any], verb: str) -> str:
    linked = current.get("linked_services", {})
    if linked_service not in linked:
        raise NotebookUtilsError(
            verb,
            f"java.lang.Exception: Linked service '{linked_service}' not found in workspace "
            f"'{current['workspace_name']}'",
        )
    return linked[linked_service]


def get_secret(akvName: str, secret: str, linkedService: str = "") -> str:  # noqa: N803
    _count("getSecret")
    current = state()
    vault = _vault_name(akvName)
    if linkedService:
        _linked_vault(linkedService, current, "getSecret")
    # Through a linked service Synapse reads as the workspace managed identity, else as the user.
    reader = "workspace" if linkedService else "user"
    return _read_secret(vault, secret, current, reader, "getSecret")


def get_secret_with_ls(linkedService: str, secret: str) -> str:  # noqa: N803
    _count("getSecretWithLS")
    current = state()
    vault = _linked_vault(linkedService, current, "getSecretWithLS")
    return _read_secret(vault, secret, current, "workspace", "getSecretWithLS")


def _help() -> None:
    print(
        "getToken(audience: String, name: String): returns AAD token for a given audience, "
        "name (optional)\n"
        "isValidToken(token: String): returns true if token hasn't expired\n"
        "getSecret(akvName: String, secret: String, linkedService: String): returns AKV secret "
        "for a given akvName, secret key and linked service\n"
        "getSecretWithLS(linkedService: String, secret: String): returns AKV secret for a given "
        "linked service, secret key\n"
        "(spark-aml-bridge Synapse runtime double)"
    )


credentials = SimpleNamespace(
    getToken=get_token,
    isValidToken=is_valid_token,
    getSecret=get_secret,
    getSecretWithLS=get_secret_with_ls,
    help=_help,
)


# --- env and runtime context ------------------------------------------------------------------


def _env_value(key: str) -> Any:
    return lambda: state().get(key) or ""


env = SimpleNamespace(
    getWorkspaceName=_env_value("workspace_name"),
    getPoolName=_env_value("pool_name"),
    getClusterId=_env_value("cluster_id"),
    getJobId=_env_value("job_id"),
    getUserName=_env_value("user_name"),
    getUserId=_env_value("user_id"),
)


class _Runtime:
    @property
    def context(self) -> dict[str, Any]:
        current = state()
        return {
            "currentNotebookName": current.get("notebook_name") or "",
            "currentWorkspaceName": current.get("workspace_name") or "",
            "currentWorkspaceId": current.get("workspace_id") or "",
            "isForPipeline": current.get("session") == "pipeline",
            "userName": current.get("user_name") or "",
        }


runtime = _Runtime()


# --- the JVM token library --------------------------------------------------------------------


class AccessToken:
    """The JVM ``AccessToken(token, type, expireTime, serverName)`` as py4j shows it."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token, self._expires_on = token, expires_on

    def token(self) -> str:
        return self._token

    def tokenType(self) -> str:  # noqa: N802
        return "Bearer"

    def expireTime(self) -> str:  # noqa: N802 - epoch seconds, as a string
        return str(self._expires_on)

    def __repr__(self) -> str:
        return f"AccessToken(<redacted>, Bearer, {self._expires_on})"


class TokenLibrary:
    """``com.microsoft.azure.synapse.tokenlibrary.TokenLibrary`` (static methods)."""

    @staticmethod
    def getAccessToken(resource: str) -> AccessToken:  # noqa: N802
        _count("TokenLibrary.getAccessToken")
        current = state()
        try:
            audience = json.loads(resource)["audience"]
        except (ValueError, KeyError, TypeError):
            raise NotebookUtilsError(
                "getAccessToken", f"java.lang.IllegalArgumentException: bad resource {resource!r}"
            ) from None
        token, expires_on = _issue(
            _resource_for(audience, current, "getAccessToken"), current, "getAccessToken"
        )
        return AccessToken(token, expires_on)

    @staticmethod
    def getSecret(akvName: str, secret: str, linkedService: str = "") -> str:  # noqa: N802, N803
        return get_secret(akvName, secret, linkedService)
