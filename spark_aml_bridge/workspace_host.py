"""A workspace's MLflow host, looked up in Azure Resource Manager from its ARM id.

Most workspaces answer on ``<region>.api.azureml.ms``; private-link ones on a host of their own.
When only the ARM id is known, the workspace resource is read from ARM (with the caller's
credential, the cloud's ARM scope, bounded retries) and its MLflow tracking URI gives the host;
results are cached per process. Errors name the fix and never echo a token.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from spark_aml_bridge.clouds import DEFAULT_CLOUD, cloud_for_arm_endpoint, get_cloud
from spark_aml_bridge.errors import (
    ConfigError,
    CredentialError,
    WorkspaceAddressError,
    WorkspaceUnreachableError,
)
from spark_aml_bridge.workspace import (
    ARM_ENDPOINT_ENV,
    CA_BUNDLE_ENV,
    SHOW_URI_COMMAND,
    WorkspaceAddress,
    parse_workspace,
    region_name,
)

__all__ = ["clear_resolution_cache", "resolve_workspace_host"]

logger = logging.getLogger(__name__)

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")

_cache: dict[tuple[str, str], tuple[str, str | None]] = {}
_cache_lock = threading.Lock()
_key_locks: dict[tuple[str, str], threading.Lock] = {}


def clear_resolution_cache() -> None:
    """Forget hosts resolved through ARM (e.g. after a workspace was moved)."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()


class _TokenFailure(Exception):
    """Carries a credential's failure out of the pipeline, apart from network errors."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class _ReportingCredential:
    """Wraps the caller's credential so a failed get_token is told apart from ARM failing."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        try:
            return self._inner.get_token(*scopes, **kwargs)
        except Exception as exc:
            raise _TokenFailure(exc) from exc


def _scrub(text: str, limit: int = 400) -> str:
    """One line of server or library text, with anything token-like removed."""
    text = _JWT_RE.sub("<redacted>", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _make_transport(ca_bundle: str | None, timeout: float) -> Any:
    # A seam for tests; requests honours HTTPS_PROXY and REQUESTS_CA_BUNDLE when verify is True.
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(
        connection_verify=ca_bundle or True, connection_timeout=timeout, read_timeout=timeout
    )


def _arm_endpoint(value: str) -> str:
    url = urlsplit((value or "").strip())
    if "@" in url.netloc:
        raise ConfigError(
            "the ARM endpoint must not contain user credentials ('...@')",
            f"set arm_endpoint= ({ARM_ENDPOINT_ENV}) to e.g. https://management.azure.com",
        )
    if url.scheme.lower() != "https" or not url.netloc or url.query:
        raise ConfigError(
            f"ARM endpoint {value!r} is not an https URL",
            f"set arm_endpoint= ({ARM_ENDPOINT_ENV}) to e.g. https://management.azure.com",
        )
    return f"https://{url.netloc}{url.path}".rstrip("/")


def _arm_error(response: Any) -> tuple[str, str]:
    """(code, message) from an ARM or AML error body, scrubbed; empty when absent."""
    try:
        body = response.json()
    except ValueError:  # not JSON (a proxy's HTML page, an empty body)
        return "", ""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", ""
    return _scrub(err.get("code") or "", 80), _scrub(err.get("message") or "")


def _ids(response: Any) -> str:
    corr = response.headers.get("x-ms-correlation-request-id") or response.headers.get(
        "x-ms-request-id"
    )
    return f" [ARM correlation id {corr}]" if corr else ""


def _unreachable_fix(endpoint: str, tls: bool) -> str:
    fix = (
        f"check network access to {endpoint}, or set arm_endpoint= ({ARM_ENDPOINT_ENV}) "
        "to your cloud's ARM endpoint"
    )
    if tls or cloud_for_arm_endpoint(endpoint) is None:
        fix += (
            f"; for an endpoint with its own TLS certificate set ca_bundle= ({CA_BUNDLE_ENV}) "
            "to its CA file"
        )
    return fix + "; or give the azureml:// tracking URI so no ARM lookup is needed"


def _lookup(
    address: WorkspaceAddress,
    credential: Any,
    endpoint: str,
    scope: str,
    ca_bundle: str | None,
    api_version: str,
    timeout: float,
    retries: int,
) -> tuple[str, str | None]:
    from azure.core import PipelineClient
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    from azure.core.pipeline.policies import (
        BearerTokenCredentialPolicy,
        HeadersPolicy,
        RequestIdPolicy,
        RetryPolicy,
        UserAgentPolicy,
    )
    from azure.core.rest import HttpRequest

    from spark_aml_bridge._version import __version__

    policies = [
        RequestIdPolicy(),
        HeadersPolicy({"Accept": "application/json"}),
        UserAgentPolicy(base_user_agent=f"spark-aml-bridge/{__version__}"),
        # The overall timeout bounds the whole lookup, retries included.
        RetryPolicy(retry_total=retries, retry_backoff_factor=0.5, timeout=timeout),
        BearerTokenCredentialPolicy(_ReportingCredential(credential), scope),
    ]
    request = HttpRequest(
        "GET", endpoint + quote(address.arm_id, safe="/()"), params={"api-version": api_version}
    )
    who = type(credential).__name__
    label = address.label
    try:
        with PipelineClient(
            base_url=endpoint, policies=policies, transport=_make_transport(ca_bundle, timeout)
        ) as client:
            response = client.send_request(request)
            response.read()
    except _TokenFailure as failure:
        raise CredentialError(
            f"{who} could not get an ARM token (scope {scope}) to look up workspace {label}: "
            f"{_scrub(str(failure.error))}",
            "check the credential's settings (tenant, client id, secret or certificate) and that "
            "it signs in to the cloud of this workspace; or give the azureml:// tracking URI so "
            "no ARM lookup is needed",
        ) from failure.error
    except ClientAuthenticationError as exc:  # not expected (get_token is wrapped); be safe
        raise CredentialError(
            f"{who} could not authenticate to ARM for workspace {label}: {_scrub(str(exc))}",
            "check the credential's settings",
        ) from exc
    except AzureError as exc:
        reason = _scrub(str(exc), 300)
        tls = "ssl" in reason.lower() or "certificate" in reason.lower()
        if "timeout" in type(exc).__name__.lower() or "timed out" in reason.lower():
            reason = f"no answer within {timeout:g}s ({reason})"
        raise WorkspaceUnreachableError(
            f"could not reach ARM at {endpoint} to look up workspace {label}: {reason}",
            _unreachable_fix(endpoint, tls),
        ) from exc

    status = response.status_code
    code, message = _arm_error(response)
    detail = f" ({code}: {message})" if code or message else ""
    detail += _ids(response)
    sub, rg, ws = address.subscription_id, address.resource_group, address.workspace_name
    if status == 404:
        raise WorkspaceAddressError(
            f"ARM at {endpoint} found no workspace {ws!r} in resource group {rg!r} of "
            f"subscription {sub}{detail}",
            f"check the three names and that the identity can see the subscription, e.g. with "
            f"`az ml workspace show -g {rg} -n {ws} --subscription {sub}`; its "
            "--query mlflow_tracking_uri output can be given instead",
        )
    if status == 401:
        raise CredentialError(
            f"ARM at {endpoint} rejected the token from {who} for workspace {label}{detail}",
            f"use an identity of the subscription's tenant (AZURE_TENANT_ID) that signs in to "
            f"this cloud (token scope {scope})",
        )
    if status == 403:
        raise CredentialError(
            f"the identity from {who} may not read workspace {label}{detail}",
            "grant it the Reader role on the workspace (or a custom role with "
            "Microsoft.MachineLearningServices/workspaces/read), or give the azureml:// "
            "tracking URI so no ARM lookup is needed",
        )
    if status != 200:
        raise WorkspaceUnreachableError(
            f"ARM at {endpoint} answered HTTP {status} for workspace {label}{detail}",
            _unreachable_fix(endpoint, False),
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise WorkspaceUnreachableError(
            f"ARM at {endpoint} answered workspace {label} with a body that is not JSON"
            f"{_ids(response)}",
            _unreachable_fix(endpoint, False),
        )
    props = body.get("properties") if isinstance(body.get("properties"), dict) else {}
    location = region_name(str(body.get("location") or ""))
    uri = props.get("mlFlowTrackingUri")
    if uri:
        # Private-link workspaces have their own host here; never build it when ARM gives it.
        try:
            found = parse_workspace(str(uri))
        except WorkspaceAddressError as exc:
            raise WorkspaceAddressError(
                f"ARM gave workspace {label} a tracking URI that cannot be used: {exc.problem}",
                f"give the tracking URI yourself (`{SHOW_URI_COMMAND}`)",
            ) from None
        if found.host is None:  # an ARM-id-shaped value: no host in it
            raise WorkspaceAddressError(
                f"ARM gave workspace {label} a tracking URI without a host",
                f"give the tracking URI yourself (`{SHOW_URI_COMMAND}`)",
            )
        return found.host, found.region or location
    if location:
        cloud = cloud_for_arm_endpoint(endpoint) or get_cloud(DEFAULT_CLOUD)
        return cloud.aml_host(location), location
    raise WorkspaceAddressError(
        f"ARM's answer for workspace {label} has neither properties.mlFlowTrackingUri nor location",
        f"give the tracking URI yourself (`{SHOW_URI_COMMAND}`)",
    )


def resolve_workspace_host(
    address: WorkspaceAddress,
    credential: Any,
    *,
    arm_endpoint: str = "https://management.azure.com",
    scope: str | None = None,
    ca_bundle: str | None = None,
    api_version: str = "2024-10-01",
    timeout: float = 30,
    retries: int = 3,
) -> WorkspaceAddress:
    """Return ``address`` with its API host, looked up in ARM if it has none yet.

    ``credential`` is an azure-identity style ``TokenCredential``. The host comes from the
    workspace's ``properties.mlFlowTrackingUri`` (right for private-link workspaces too), else
    from its ``location``. Results are cached per process by ARM endpoint and workspace.
    ``scope=None`` (default) picks the ARM scope of the cloud ``arm_endpoint`` belongs to,
    AzureCloud's (``https://management.azure.com/.default``) for custom endpoints. ``timeout``
    bounds the whole lookup, retries included.
    """
    if address.host:
        return address
    label = address.label
    if credential is None or not callable(getattr(credential, "get_token", None)):
        raise CredentialError(
            f"no usable credential to look up the host of workspace {label}",
            "pass an azure-identity credential (one with get_token), or give the azureml:// "
            "tracking URI so no ARM lookup is needed",
        )
    endpoint = _arm_endpoint(arm_endpoint)
    if scope is None:
        scope = (cloud_for_arm_endpoint(endpoint) or get_cloud(DEFAULT_CLOUD)).arm_scope
    if ca_bundle is not None:
        import os

        if not os.path.isfile(ca_bundle):
            raise ConfigError(
                f"CA bundle {ca_bundle!r} is not a file",
                f"set ca_bundle= ({CA_BUNDLE_ENV}) to a PEM file with the endpoint's CA",
            )
    key = (endpoint.lower(), address.arm_id.lower())
    with _cache_lock:
        hit = _cache.get(key)
        key_lock = _key_locks.setdefault(key, threading.Lock())
    if hit is None:
        # One lookup per workspace even when many threads connect at once.
        with key_lock:
            with _cache_lock:
                hit = _cache.get(key)
            if hit is None:
                hit = _lookup(
                    address, credential, endpoint, scope, ca_bundle, api_version, timeout, retries
                )
                with _cache_lock:
                    _cache[key] = hit
                logger.debug(
                    "workspace %s resolved through %s to host %s", address, endpoint, hit[0]
                )
    host, region = hit
    return dataclasses.replace(address, host=host, region=region or address.region)
