"""The executor side of the driver service (``spark_aml_bridge.driver_service``).

A Spark Python worker finds the driver's handle in its environment, reads the key file Spark
copied next to it (``SparkFiles``), and asks the driver over TLS pinned to the driver's own
certificate: for a workspace token when its cached one nears expiry, or for the driver's active
run (``spark_aml_bridge.task_run``). Stdlib only: it runs in every Python worker.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlparse

from spark_aml_bridge.driver_service import (
    CLIENT_HEADER,
    DRIVER_HANDLE_ENV,
    KEY_HEADER,
    RUN_PATH,
    TOKEN_PATH,
    token_fingerprint,
)
from spark_aml_bridge.errors import CredentialError

UNLINKED_TASK = (
    "this Spark task has no link to its driver: call spark_aml_bridge.connect() on the driver "
    "before the job; where there is no SparkContext (Spark Connect, Databricks standard/shared "
    "access mode, serverless) collect the results and log them on the driver, or log from a "
    "foreachBatch function (it runs on the driver)"
)
_UNLINKED_FIX = (
    "call spark_aml_bridge.connect() on the driver before starting the Spark job (it links "
    "executors through the SparkContext). Where there is no SparkContext (Spark Connect, "
    "Databricks standard/shared access mode, serverless), collect the results and log them on "
    "the driver, or log from a foreachBatch function, which runs on the driver"
)


class DriverLink:
    """How this executor process reaches its driver; one per handle per process."""

    def __init__(self, handle: dict[str, Any]) -> None:
        self.url = str(handle["url"])
        self.key_file = str(handle["key_file"])
        self.serves_tokens = bool(handle.get("tokens", True))
        self._key: dict[str, str] | None = None
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    # -- requests -------------------------------------------------------------------------------
    def token(self, scope: str, rejected: str | None = None) -> Any:
        from azure.core.credentials import AccessToken

        body: dict[str, Any] = {"scope": scope}
        if rejected:
            body["rejected"] = token_fingerprint(rejected)
        answer = self._call(TOKEN_PATH, body)
        return AccessToken(str(answer["token"]), int(answer["expires_on"]))

    def active_run(self) -> dict[str, Any]:
        return self._call(RUN_PATH, {})

    # -- internals ------------------------------------------------------------------------------
    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        key, context = self._credentials()
        parsed = urlparse(self.url)
        connection = http.client.HTTPSConnection(
            parsed.hostname or "127.0.0.1", parsed.port, context=context, timeout=60
        )
        headers = {
            "Content-Type": "application/json",
            KEY_HEADER: key["secret"],
            CLIENT_HEADER: f"{socket.gethostname()}:{os.getpid()}",
        }
        try:
            connection.request("POST", path, body=json.dumps(body), headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise CredentialError(
                f"the Spark driver's service at {self.url} did not answer ({type(exc).__name__}: "
                f"{exc})",
                "keep the driver connected (spark_aml_bridge.connect(), no disconnect()) while "
                "its Spark jobs run, and let executors reach the driver's host",
            ) from None
        finally:
            connection.close()
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = {}
        if response.status != 200:
            raise CredentialError(
                f"the Spark driver's service answered {response.status}: "
                f"{answer.get('error', '')}".rstrip(": "),
                "check the driver's connection with `spark-aml-bridge doctor` on the driver",
            )
        return answer

    def _credentials(self) -> tuple[dict[str, str], ssl.SSLContext]:
        with self._lock:
            if self._key is None or self._context is None:
                with open(_key_path(self.key_file), encoding="utf-8") as handle:
                    key = json.load(handle)
                context = ssl.create_default_context(cadata=key["cert"])
                # Pinned: only the driver's own self-signed certificate validates, whatever name
                # executors reach the driver by.
                context.check_hostname = False
                self._key, self._context = key, context
            return self._key, self._context

    def __repr__(self) -> str:
        return f"DriverLink({self.url})"


def _key_path(name: str) -> str:
    try:
        from pyspark import SparkFiles

        path = SparkFiles.get(name)
    except Exception as exc:  # noqa: BLE001 - not inside a Spark task
        raise CredentialError(
            f"this process cannot read the driver's key file ({type(exc).__name__})",
            _UNLINKED_FIX,
        ) from None
    if not os.path.exists(path):
        raise CredentialError(
            "the driver's key file has not reached this Spark executor", _UNLINKED_FIX
        )
    return path


_links: dict[str, DriverLink] = {}
_links_lock = threading.Lock()


def driver_link(environ: dict[str, str] | None = None) -> DriverLink | None:
    """The link to the driver named by this process's environment, or None when not linked."""
    raw = (environ or {}).get(DRIVER_HANDLE_ENV) or os.environ.get(DRIVER_HANDLE_ENV)
    if not raw:
        return None
    with _links_lock:
        link = _links.get(raw)
        if link is None:
            link = _links[raw] = DriverLink(json.loads(raw))
        return link


def require_driver_link(what: str) -> DriverLink:
    link = driver_link()
    if link is None:
        raise CredentialError(f"{what}: this Spark task has no link to its driver", _UNLINKED_FIX)
    return link


class DriverTokenCredential:
    """A TokenCredential whose tokens come from the driver (bounded by the caller's cache)."""

    def __init__(self, link: DriverLink, rejected: str | None = None) -> None:
        self._link = link
        self._rejected = rejected
        self.last_token: str | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        token = self._link.token(scopes[0] if scopes else "", self._rejected)
        self._rejected = None
        self.last_token = token.token
        return token

    def __repr__(self) -> str:
        return f"DriverTokenCredential({self._link.url})"


class DriverTokenFactory:
    """Builds the credential; a rebuild (the token cache's answer to a 401) names the rejected
    token to the driver, so the driver replaces it instead of handing it out again."""

    def __init__(self, link: DriverLink) -> None:
        self._link = link
        self._previous: DriverTokenCredential | None = None

    def __call__(self) -> DriverTokenCredential:
        rejected = self._previous.last_token if self._previous is not None else None
        self._previous = DriverTokenCredential(self._link, rejected)
        return self._previous
