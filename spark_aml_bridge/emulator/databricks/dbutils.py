"""A ``dbutils`` double: secrets (scopes, keys, ACL errors), the notebook command context, and
Unity Catalog service credentials / the passthrough token backed by the emulator's token endpoint.

Shapes follow what Databricks documents and what MLflow and the Databricks SDK call: Scala
``Option``-like values from the command context (``isDefined()``/``get()``), ``tags()`` and
``extraContext()`` maps whose ``get(key)`` returns an ``Option``, and errors whose text carries the
Java exception the real ``dbutils`` surfaces (``Secret does not exist with scope: s and key: k``,
``PERMISSION_DENIED: ... does not have READ permission on scope s ...``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

# -- Scala-ish values ------------------------------------------------------------------------------


class ScalaOption:
    """``scala.Option`` as py4j shows it to Python."""

    def __init__(self, value: Any = None) -> None:
        self._value = value

    def isDefined(self) -> bool:  # noqa: N802 - the Scala name
        return self._value is not None

    def isEmpty(self) -> bool:  # noqa: N802
        return self._value is None

    def get(self) -> Any:
        if self._value is None:
            raise ValueError("None.get")  # java.util.NoSuchElementException in the real thing
        return self._value

    def getOrElse(self, default: Any) -> Any:  # noqa: N802
        return default if self._value is None else self._value

    def __repr__(self) -> str:
        return "None" if self._value is None else f"Some({self._value!r})"


class ScalaMap:
    """``scala.collection.Map[String, String]``: ``get`` answers an Option."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = {k: v for k, v in values.items() if v is not None}

    def get(self, key: str) -> ScalaOption:
        return ScalaOption(self._values.get(key))

    def contains(self, key: str) -> bool:
        return key in self._values

    def apply(self, key: str) -> Any:
        return self._values[key]


class ExecutionError(Exception):
    """What the real ``dbutils`` raises: the Java exception's text in the message."""


# -- tokens from the emulator ----------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorToken:
    token: str
    expires_on: int


class ManagedIdentityProvider:
    """An access connector's managed identity: App Service-style MI endpoint of the emulator.

    What ``getServiceCredentialsProvider`` returns: an azure-identity-like credential object.
    """

    def __init__(self, endpoint: str, header: str, ca_bundle: str | None, client_id: str = ""):
        self._endpoint = endpoint
        self._header = header
        self._ca_bundle = ca_bundle
        self._client_id = client_id

    def get_token(self, *scopes: str, **kwargs: Any) -> EmulatorToken:
        import requests

        if not scopes:
            raise ValueError("get_token requires at least one scope")
        resource = scopes[0][: -len("/.default")] if scopes[0].endswith("/.default") else scopes[0]
        params = {"api-version": "2019-08-01", "resource": resource}
        if self._client_id:
            params["client_id"] = self._client_id
        response = requests.get(
            self._endpoint,
            params=params,
            headers={"X-IDENTITY-HEADER": self._header},
            verify=self._ca_bundle or True,
            timeout=30,
        )
        if response.status_code != 200:
            raise ExecutionError(
                f"ManagedIdentityCredential authentication unavailable: HTTP "
                f"{response.status_code}: {response.text[:200]}"
            )
        body = response.json()
        return EmulatorToken(body["access_token"], int(body["expires_on"]))

    def __repr__(self) -> str:
        return "ManagedIdentityProvider(<access connector>)"


class _Passthrough:
    """The user's passthrough token, renewed by the 'runtime' when a quarter of its life is left."""

    def __init__(self, provider: ManagedIdentityProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._token: EmulatorToken | None = None
        self._issued = 0.0

    def current(self) -> str:
        with self._lock:
            now = time.time()
            token = self._token
            if token is None or now >= token.expires_on - (token.expires_on - self._issued) / 4:
                self._token = self._provider.get_token("https://management.azure.com/.default")
                self._issued = now
            return self._token.token


# -- dbutils ---------------------------------------------------------------------------------------


class _SecretMetadata:
    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"SecretMetadata(key='{self.key}')"


class _SecretScope:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"SecretScope(name='{self.name}')"


class SecretsUtil:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._scopes: dict[str, dict[str, str]] = spec.get("secrets") or {}
        self._denied = set(spec.get("denied_scopes") or ())
        self._user = spec.get("user") or "user@example.com"

    def _check(self, scope: str) -> None:
        if scope in self._denied:
            raise ExecutionError(
                "An error occurred while calling o431.get.\n: "
                "com.databricks.common.client.DatabricksServiceHttpClientException: "
                f"PERMISSION_DENIED: {self._user} does not have READ permission on scope {scope} "
                "to perform this action."
            )

    def get(self, scope: str, key: str) -> str:
        self._check(scope)
        value = self._scopes.get(scope, {}).get(key)
        if value is None:
            raise ExecutionError(
                "An error occurred while calling o431.get.\n: java.lang.IllegalArgumentException: "
                f"Secret does not exist with scope: {scope} and key: {key}"
            )
        return value

    def getBytes(self, scope: str, key: str) -> bytes:  # noqa: N802
        return self.get(scope, key).encode()

    def list(self, scope: str) -> list[_SecretMetadata]:
        self._check(scope)
        if scope not in self._scopes:
            raise ExecutionError(
                "An error occurred while calling o431.list.\n: "
                "com.databricks.common.client.DatabricksServiceHttpClientException: "
                f"RESOURCE_DOES_NOT_EXIST: Scope {scope} does not exist!"
            )
        return [_SecretMetadata(k) for k in sorted(self._scopes[scope])]

    def listScopes(self) -> list[_SecretScope]:  # noqa: N802
        return [_SecretScope(s) for s in sorted(set(self._scopes) | self._denied)]

    def __repr__(self) -> str:
        return "<dbutils.secrets>"


class CommandContext:
    """``dbutils.notebook.entry_point.getDbutils().notebook().getContext()``."""

    def __init__(self, spec: dict[str, Any], passthrough: _Passthrough | None) -> None:
        self._spec = spec
        self._passthrough = passthrough
        notebook = spec.get("workload") == "notebook" or (
            spec.get("workload") == "job" and spec.get("notebook_path")
        )
        self._tags = ScalaMap(
            {
                "orgId": spec.get("org_id"),
                "clusterId": spec.get("cluster_id"),
                "browserHostName": spec.get("workspace_url"),
                "user": spec.get("user"),
                "notebookId": spec.get("notebook_id") if notebook else None,
                "jobId": spec.get("job_id") if spec.get("workload") == "job" else None,
                "idInJob": spec.get("job_run_id") if spec.get("workload") == "job" else None,
                "jobType": "NORMAL" if spec.get("workload") == "job" else None,
            }
        )
        self._extra = ScalaMap(
            {
                "notebook_path": spec.get("notebook_path") if notebook else None,
                "api_url": spec.get("api_url"),
            }
        )

    def _get(self, key: str, when: bool = True) -> ScalaOption:
        return ScalaOption(self._spec.get(key) if when else None)

    def notebookPath(self) -> ScalaOption:  # noqa: N802
        return ScalaOption(self._extra.get("notebook_path").getOrElse(None))

    def jobId(self) -> ScalaOption:  # noqa: N802
        return self._get("job_id", self._spec.get("workload") == "job")

    def idInJob(self) -> ScalaOption:  # noqa: N802
        return self._get("job_run_id", self._spec.get("workload") == "job")

    def jobTaskType(self) -> ScalaOption:  # noqa: N802
        workload = self._spec.get("workload")
        kind = "notebook" if self._spec.get("notebook_path") else "python"
        return ScalaOption(kind if workload == "job" else None)

    def apiUrl(self) -> ScalaOption:  # noqa: N802
        return self._get("api_url")

    def apiToken(self) -> ScalaOption:  # noqa: N802
        return self._get("api_token")

    def workspaceId(self) -> ScalaOption:  # noqa: N802
        return self._get("org_id")

    def browserHostName(self) -> ScalaOption:  # noqa: N802
        return self._get("workspace_url")

    def userName(self) -> ScalaOption:  # noqa: N802
        return self._get("user")

    def aclPathOfAclRoot(self) -> ScalaOption:  # noqa: N802
        notebook_id = self._tags.get("notebookId").getOrElse(None)
        return ScalaOption(f"/workspace/{notebook_id}" if notebook_id else None)

    def tags(self) -> ScalaMap:
        return self._tags

    def extraContext(self) -> ScalaMap:  # noqa: N802
        return self._extra

    def adlsAadToken(self) -> ScalaOption:  # noqa: N802
        return ScalaOption(self._passthrough.current() if self._passthrough else None)

    def __repr__(self) -> str:
        return "<CommandContext>"


class _DriverConf:
    def workflowSslTrustAll(self) -> bool:  # noqa: N802
        return False


class _EntryPoint:
    def __init__(self, context: CommandContext, spec: dict[str, Any]) -> None:
        self._context = context
        self._spec = spec

    def getDbutils(self) -> Any:  # noqa: N802
        context = self._context

        class _Notebook:
            def getContext(self) -> CommandContext:  # noqa: N802
                return context

        class _JavaDbutils:
            def notebook(self) -> _Notebook:
                return _Notebook()

        return _JavaDbutils()

    def getNonUcApiToken(self) -> str | None:  # noqa: N802
        return self._spec.get("api_token")

    def getDriverConf(self) -> _DriverConf:  # noqa: N802
        return _DriverConf()

    def getLogger(self) -> Any:  # noqa: N802
        class _Logger:
            def logUsage(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802
                return None

        return _Logger()

    def getJobGroupId(self) -> str | None:  # noqa: N802
        return None

    def getReplId(self) -> str:  # noqa: N802
        return self._spec.get("repl_id") or "ReplId-emulator"

    def putMlflowProperties(self, *args: Any) -> None:  # noqa: N802
        return None

    def clearMlflowProperties(self) -> None:  # noqa: N802
        return None


class NotebookUtil:
    def __init__(self, context: CommandContext, spec: dict[str, Any]) -> None:
        self.entry_point = _EntryPoint(context, spec)

    def __repr__(self) -> str:
        return "<dbutils.notebook>"


class CredentialsUtil:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    def getServiceCredentialsProvider(self, name: str) -> ManagedIdentityProvider:  # noqa: N802
        return service_credentials_provider(self._spec, name)

    def __repr__(self) -> str:
        return "<dbutils.credentials>"


def service_credentials_provider(spec: dict[str, Any], name: str) -> ManagedIdentityProvider:
    """The provider for service credential `name`, or the errors Unity Catalog answers."""
    if name in (spec.get("denied_service_credentials") or ()):
        raise ExecutionError(
            f"PERMISSION_DENIED: User does not have ACCESS privilege on Service Credential "
            f"'{name}'."
        )
    config = (spec.get("service_credentials") or {}).get(name)
    if config is None:
        raise ExecutionError(f"NOT_FOUND: Service Credential '{name}' does not exist.")
    return ManagedIdentityProvider(
        config["endpoint"], config["header"], config.get("ca_bundle"), config.get("client_id", "")
    )


class DbUtils:
    """What a Databricks notebook's ``dbutils`` offers to the bridge and to MLflow."""

    def __init__(self, spec: dict[str, Any]) -> None:
        passthrough = None
        if spec.get("passthrough"):
            conf = spec["passthrough"]
            passthrough = _Passthrough(
                ManagedIdentityProvider(conf["endpoint"], conf["header"], conf.get("ca_bundle"))
            )
        self.secrets = SecretsUtil(spec)
        self.notebook = NotebookUtil(CommandContext(spec, passthrough), spec)
        # MLflow reads both `dbutils.entry_point` and `dbutils.notebook.entry_point`.
        self.entry_point = self.notebook.entry_point
        self.credentials = CredentialsUtil(spec)

    def __repr__(self) -> str:
        return "<dbutils (spark_aml_bridge Databricks runtime double)>"
