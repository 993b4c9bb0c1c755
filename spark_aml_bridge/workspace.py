"""The workspace address: parse and format ARM ids, ``azureml://`` tracking URIs and REST URLs.

A workspace is named by subscription, resource group and workspace name. Its MLflow endpoint
lives on a host that is usually ``<region>.api.azureml.ms`` but is the workspace's own host for
private-link workspaces, so when only the ARM id is known the host is looked up in ARM
(:func:`resolve_workspace_host`), the way Azure's own tools do.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from spark_aml_bridge.clouds import (
    CLOUDS,
    DEFAULT_CLOUD,
    Cloud,
    cloud_for_arm_endpoint,
    get_cloud,
)
from spark_aml_bridge.errors import (
    ConfigError,
    CredentialError,
    WorkspaceAddressError,
    WorkspaceUnreachableError,
)

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

__all__ = [
    "WorkspaceAddress",
    "address_from_settings",
    "clear_resolution_cache",
    "parse_workspace",
    "resolve_workspace_host",
    "workspace_from_parts",
]

logger = logging.getLogger(__name__)

PROVIDER = "Microsoft.MachineLearningServices"
ARM_ENDPOINT_ENV = "SPARK_AML_BRIDGE_ARM_ENDPOINT"
CA_BUNDLE_ENV = "SPARK_AML_BRIDGE_CA_BUNDLE"

_GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_REGION_RE = re.compile(r"^[a-z][a-z0-9]{1,40}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")

# --- examples shown in every error, one per form the user may be attempting ---------------------

_EX_SUB = "00000000-0000-0000-0000-000000000000"
_EX_SCOPE = (
    f"/subscriptions/{_EX_SUB}/resourceGroups/my-rg/providers/{PROVIDER}/workspaces/my-workspace"
)
_EX_ARM = _EX_SCOPE
_EX_URI = f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{_EX_SCOPE}"
_EX_REST = f"https://westeurope.api.azureml.ms/mlflow/v2.0{_EX_SCOPE}"
_SHOW_CMD = "az ml workspace show -g <rg> -n <workspace> --query mlflow_tracking_uri"
_FIXES = {
    "arm": f"give the workspace's ARM id, e.g. {_EX_ARM}",
    "uri": f"give the tracking URI as `{_SHOW_CMD}` prints it, e.g. {_EX_URI}",
    "rest": f"give the workspace's MLflow REST base URL, e.g. {_EX_REST}",
    "parts": (
        f"give subscription_id='{_EX_SUB}', resource_group='my-rg', "
        "workspace_name='my-workspace' (and optionally region='westeurope' or host=...)"
    ),
}
_LABELS = {"arm": "ARM id", "uri": "tracking URI", "rest": "REST URL", "parts": "parts"}


def _fail(problem: str, form: str, shown: str | None = None) -> WorkspaceAddressError:
    if shown is not None:
        problem = f"bad workspace {_LABELS[form]} {shown!r}: {problem}"
    return WorkspaceAddressError(problem, _FIXES[form])


def _registry_error(name: str, form: str) -> WorkspaceAddressError:
    return WorkspaceAddressError(
        f"{name!r} is an Azure ML registry, not a workspace: registries hold shared models and "
        "cannot be an MLflow tracking server",
        "point the bridge at a workspace instead; " + _FIXES[form],
    )


# --- validation of the three names (Azure's naming rules) ---------------------------------------


def _clip(value: str) -> str:
    """A value as quoted in an error; an absurdly long one is cut so the error stays readable."""
    if len(value) <= 120:
        return repr(value)
    return f"{value[:60]!r}… ({len(value):,} characters)"


def _check_subscription(value: str) -> str | None:
    if not value:
        return "subscription id is missing"
    if not _GUID_RE.match(value):
        return f"subscription id {_clip(value)} is not a GUID (8-4-4-4-12 hex digits)"
    return None


def _check_resource_group(value: str) -> str | None:
    if not value:
        return "resource group name is missing"
    if len(value) > 90:
        return f"resource group name {_clip(value)} has {len(value)} characters; at most 90 allowed"
    bad = sorted({c for c in value if not (c.isalnum() or c in "_-.()")})
    if bad:
        return (
            f"resource group name {_clip(value)} contains {''.join(bad)!r}; only letters, digits, "
            "'_', '-', '.', '(' and ')' are allowed"
        )
    if value.endswith("."):
        return f"resource group name {_clip(value)} must not end with '.'"
    return None


def _check_workspace_name(value: str) -> str | None:
    if not value:
        return "workspace name is missing"
    if not 3 <= len(value) <= 33:
        return f"workspace name {_clip(value)} has {len(value)} characters; it must have 3 to 33"
    if not _WORKSPACE_RE.match(value):
        if not value[0].isascii() or not value[0].isalnum():
            return f"workspace name {_clip(value)} must start with a letter or digit"
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "-_"))})
        return (
            f"workspace name {_clip(value)} contains {''.join(bad)!r}; only letters, digits, "
            "'-' and '_' are allowed"
        )
    return None


def _check_names(sub: str, rg: str, ws: str) -> str | None:
    # Report every bad name at once so one error is enough to fix the input.
    problems = [
        p
        for p in (_check_subscription(sub), _check_resource_group(rg), _check_workspace_name(ws))
        if p
    ]
    return "; ".join(problems) or None


def _normalize_region(value: str) -> str:
    # ARM locations are lower-case without spaces; accept the display form ("West Europe") too.
    return value.replace(" ", "").strip().lower()


def _normalize_host(value: str) -> tuple[str, str | None]:
    """(host, problem): a bare netloc, lower-cased, port kept."""
    host = value.strip().lower()
    if "@" in host:
        # Never echo it: the part before '@' may be a password.
        return host, "the host must not contain user credentials ('...@')"
    if not _HOST_RE.match(host):
        return (
            host,
            f"host {value!r} is not a valid host name (expected e.g. westeurope.api.azureml.ms)",
        )
    return host, None


def _region_from_host(host: str) -> str | None:
    """``westeurope`` from ``westeurope.api.azureml.ms`` or ``<id>.workspace.westeurope.api...``."""
    if host.startswith("["):
        return None
    name = host.rsplit(":", 1)[0]
    for cloud in CLOUDS.values():
        for suffix in (cloud.aml_api_suffix, *cloud.legacy_aml_suffixes):
            if name.endswith("." + suffix):
                label = name[: -len(suffix) - 1].rsplit(".", 1)[-1]
                return label if _REGION_RE.match(label) else None
    return None


def _quoted_scope(sub: str, rg: str, ws: str) -> str:
    # Resource group names may hold non-ASCII letters; keep '(' and ')' literal as ARM does.
    return (
        f"/subscriptions/{quote(sub, safe='')}/resourceGroups/{quote(rg, safe='()')}"
        f"/providers/{PROVIDER}/workspaces/{quote(ws, safe='')}"
    )


@dataclass(frozen=True)
class WorkspaceAddress:
    """Where an Azure ML workspace is: its ARM names, and its API host once known."""

    subscription_id: str
    resource_group: str
    workspace_name: str
    host: str | None = None  # netloc, e.g. "westeurope.api.azureml.ms" or "127.0.0.1:8443"
    region: str | None = None

    def __post_init__(self) -> None:
        # Validate here too, so no invalid address exists however it was built.
        problem = _check_names(self.subscription_id, self.resource_group, self.workspace_name)
        if problem:
            raise _fail(problem, "parts")
        if self.host is not None:
            host, problem = _normalize_host(self.host)
            if problem:
                raise _fail(problem, "parts")
            object.__setattr__(self, "host", host)
        if self.region is not None:
            region = _normalize_region(self.region)
            if not _REGION_RE.match(region):
                raise _fail(f"region {self.region!r} is not an Azure region name", "parts")
            object.__setattr__(self, "region", region)

    @property
    def arm_id(self) -> str:
        """``/subscriptions/<sub>/resourceGroups/<rg>/providers/<provider>/workspaces/<ws>``."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{self.workspace_name}"
        )

    @property
    def scope_path(self) -> str:
        """The path AML puts after ``/mlflow/v2.0``: the ARM id."""
        return self.arm_id

    def _require_host(self) -> str:
        if not self.host:
            raise WorkspaceAddressError(
                f"the API host of workspace {self._label} is not known",
                "pass region= or host=, give the azureml:// tracking URI instead of the ARM id, "
                "or look the host up with resolve_workspace_host()",
            )
        return self.host

    def _url(self, scheme: str, service: str) -> str:
        scope = _quoted_scope(self.subscription_id, self.resource_group, self.workspace_name)
        return f"{scheme}://{self._require_host()}/{service}{scope}"

    def tracking_uri(self, api_version: str = "v1.0") -> str:
        """The ``azureml://`` URI, in the form ``az ml workspace show`` prints."""
        if api_version not in ("v1.0", "v2.0"):
            raise ConfigError(
                f"tracking URI api_version {api_version!r} is not supported", "use 'v1.0' or 'v2.0'"
            )
        return self._url("azureml", f"mlflow/{api_version}")

    @property
    def rest_base(self) -> str:
        """Base URL MLflow's REST calls go under (MLflow >= 2 uses ``/mlflow/v2.0``)."""
        return self._url("https", "mlflow/v2.0")

    @property
    def history_base(self) -> str:
        """Base URL of the run-history (artifact) service."""
        return self._url("https", "history/v1.0")

    @property
    def _label(self) -> str:
        return f"{self.workspace_name} ({self.resource_group}, sub …{self.subscription_id[-4:]})"

    def __str__(self) -> str:
        return (
            f"{self._label} at {self.host}" if self.host else f"{self._label} (host not resolved)"
        )


# --- parsing ------------------------------------------------------------------------------------

_WORDS = ("subscriptions", "resourceGroups", "providers", PROVIDER, "workspaces")


def _parse_segments(segs: list[str], form: str, shown: str) -> tuple[str, str, str]:
    """(sub, rg, ws) from ``subscriptions/<sub>/resourceGroups/<rg>/providers/.../<ws>[/...]``."""
    lowered = [s.lower() for s in segs]

    def expect(i: int, word: str) -> None:
        found = segs[i] if i < len(segs) else None
        if found is not None and found.lower() == word.lower():
            return
        if i == 6 and found is not None and found.lower() == "registries":
            raise _registry_error(segs[7] if len(segs) > 7 else "", form)
        if "registries" in lowered[: i + 1]:
            j = lowered.index("registries")
            raise _registry_error(segs[j + 1] if len(segs) > j + 1 else "", form)
        if found is None:
            after = f"after {segs[i - 1]!r}" if i else "at all"
            raise _fail(f"it ends too early: expected {word!r} {after}", form, shown)
        if word == PROVIDER and found:
            raise _fail(
                f"provider {found!r} is not {PROVIDER}: this is not an Azure ML workspace",
                form,
                shown,
            )
        raise _fail(f"found {found!r} where {word!r} was expected", form, shown)

    def value(i: int, what: str) -> str:
        if i >= len(segs):
            raise _fail(f"it ends too early: the {what} is missing", form, shown)
        return segs[i]

    expect(0, "subscriptions")
    sub = value(1, "subscription id")
    expect(2, "resourceGroups")
    rg = value(3, "resource group name")
    expect(4, "providers")
    expect(5, PROVIDER)
    expect(6, "workspaces")
    ws = value(7, "workspace name")
    problem = _check_names(sub, rg, ws)
    if problem:
        raise _fail(problem, form, shown)
    # AML's own plugin tolerates anything after the workspace in a URI; an ARM id must end there.
    if form == "arm" and len(segs) > 8:
        extra = "/".join(segs[8:])
        raise _fail(f"unexpected {extra!r} after the workspace name {ws!r}", form, shown)
    return sub, rg, ws


def _parse_arm_id(text: str) -> WorkspaceAddress:
    shown = text
    if "/" not in text:
        what = "a subscription id" if _GUID_RE.match(text) else "a bare name"
        raise WorkspaceAddressError(
            f"workspace {text!r} looks like {what}, not a full workspace address",
            _FIXES["arm"] + "; or give subscription_id=, resource_group= and workspace_name=",
        )
    segs = text.strip("/").split("/")
    sub, rg, ws = _parse_segments(segs, "arm", shown)
    return WorkspaceAddress(sub, rg, ws)


def _parse_url(text: str) -> WorkspaceAddress:
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    # Quote the input without query, fragment or user info: those may carry secrets.
    netloc = parts.netloc.rsplit("@", 1)[-1]
    shown = f"{scheme}://{netloc}{parts.path}"
    if scheme == "azureml":
        form = "uri"
    elif scheme == "https":
        form = "rest"
    elif scheme == "http":
        raise _fail(
            "scheme 'http' is not supported: workspaces are only served over https", "uri", shown
        )
    else:
        raise _fail(f"scheme {scheme!r} is not an Azure ML workspace address", "uri", shown)
    if "@" in parts.netloc:
        raise _fail("the host must not contain user credentials ('...@')", form, shown)
    if netloc.lower() == "registries":
        name = parts.path.strip("/").split("/", 1)[0]
        raise _registry_error(name, form)
    if not netloc:
        raise _fail("the host is missing", form, shown)
    if netloc.lower() == "subscriptions":
        raise _fail(
            "azureml://subscriptions/... is an asset or datastore URI with no host, "
            "not a tracking URI",
            form,
            shown,
        )
    host, problem = _normalize_host(netloc)
    if problem:
        raise _fail(problem, form, shown)
    arm_cloud = cloud_for_arm_endpoint(host)
    if arm_cloud is not None:
        raise WorkspaceAddressError(
            f"{host!r} is Azure Resource Manager ({arm_cloud.name}), not a workspace's MLflow host",
            "give the workspace's ARM id alone (/subscriptions/<sub>/resourceGroups/<rg>/providers/"
            f"{PROVIDER}/workspaces/<ws>, the bridge looks its host up in ARM), or its azureml:// "
            f"tracking URI (`{_SHOW_CMD}`)",
        )
    path = parts.path
    segs = [unquote(s) for s in path.split("/")[1:]]
    if segs and segs[-1] == "":
        segs.pop()  # trailing slash
    if len(segs) < 2 or segs[0].lower() != "mlflow" or segs[1].lower() not in ("v1.0", "v2.0"):
        if "registries" in [s.lower() for s in segs]:
            i = [s.lower() for s in segs].index("registries")
            raise _registry_error(segs[i + 1] if len(segs) > i + 1 else "", form)
        raise _fail(
            f"path {path or '/'!r} does not start with '/mlflow/v1.0/' or '/mlflow/v2.0/'",
            form,
            shown,
        )
    sub, rg, ws = _parse_segments(segs[2:], form, shown)
    return WorkspaceAddress(sub, rg, ws, host=host, region=_region_from_host(host))


def parse_workspace(value: str) -> WorkspaceAddress:
    """Parse an ARM id, an ``azureml://`` tracking URI or an ``https://`` MLflow REST URL.

    Raises :class:`WorkspaceAddressError` quoting the bad part, with an example of the form.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise WorkspaceAddressError(
            "no workspace given",
            "pass workspace= (its ARM id or azureml:// tracking URI), or subscription_id=, "
            f"resource_group= and workspace_name=; e.g. workspace='{_EX_ARM}'",
        )
    if not isinstance(value, str):
        raise WorkspaceAddressError(
            f"workspace must be a string, not {type(value).__name__}", _FIXES["arm"]
        )
    text = value.strip()
    if len(text) > 4096:
        raise WorkspaceAddressError(
            f"workspace address is {len(text):,} characters long; no workspace address is longer "
            "than a few hundred",
            _FIXES["arm"],
        )
    # ARM ids never contain ':', so a scheme-like prefix means a URI.
    if _SCHEME_RE.match(text):
        return _parse_url(text)
    return _parse_arm_id(text)


def workspace_from_parts(
    subscription_id: str | None,
    resource_group: str | None,
    workspace_name: str | None,
    region: str | None = None,
    host: str | None = None,
    *,
    cloud: str | Cloud = DEFAULT_CLOUD,
) -> WorkspaceAddress:
    """Build an address from its names (a missing one is an error naming it); ``region`` gives
    host ``<region>.<cloud's API suffix>``."""
    sub, rg, ws = ((v or "").strip() for v in (subscription_id, resource_group, workspace_name))
    missing = [
        name
        for name, v in (("subscription_id", sub), ("resource_group", rg), ("workspace_name", ws))
        if not v
    ]
    if missing:
        raise WorkspaceAddressError(
            f"workspace setting(s) missing: {', '.join(missing)}", _FIXES["parts"]
        )
    problem = _check_names(sub, rg, ws)
    if problem:
        raise _fail(problem, "parts")
    if host is not None and host.strip():
        host = host.strip()
        if "://" in host:
            # Tolerate a URL where a host was asked for, as long as it is only a host.
            url = urlsplit(host)
            if url.path not in ("", "/") or url.query:
                raise _fail(f"host {host!r} must be a host name, not a URL with a path", "parts")
            host = url.netloc
        host, problem = _normalize_host(host)
        if problem:
            raise _fail(problem, "parts")
    else:
        host = None
    if region is not None and region.strip():
        region = _normalize_region(region)
        if not _REGION_RE.match(region):
            raise _fail(f"region {region!r} is not an Azure region name (e.g. westeurope)", "parts")
        if host is None:
            the_cloud = cloud if isinstance(cloud, Cloud) else get_cloud(cloud)
            host = the_cloud.aml_host(region)
        else:
            derived = _region_from_host(host)
            if derived and derived != region:
                raise _fail(f"region {region!r} does not match host {host!r}", "parts")
    else:
        region = _region_from_host(host) if host else None
    return WorkspaceAddress(sub, rg, ws, host=host, region=region)


# --- the address from settings (one function for every consumer) ---------------------------------


def address_from_settings(
    config: BridgeConfig, *, need_host_for: str | None = None
) -> WorkspaceAddress:
    """The workspace address the settings describe: ``workspace`` (ARM id or URI), or the three
    names; ``region`` builds the host in the ``cloud``'s AML domain when none is given (China
    cloud + chinaeast2 -> chinaeast2.api.ml.azure.cn). Used by ``connect()``, init scripts, pool
    configuration, jobs and (through the resolved URI) executors, so they never disagree.

    ``need_host_for`` names a consumer that cannot look the host up in ARM (a cluster's init
    script): then an address without a host is an error naming the fix.
    """
    cloud = get_cloud(config.cloud)
    region = config.region
    if config.workspace:
        address = parse_workspace(config.workspace)
        if address.host is None and region:
            address = workspace_from_parts(
                address.subscription_id,
                address.resource_group,
                address.workspace_name,
                region=region,
                cloud=cloud,
            )
    elif any((config.subscription_id, config.resource_group, config.workspace_name)):
        address = workspace_from_parts(
            config.subscription_id,
            config.resource_group,
            config.workspace_name,
            region=region,
            cloud=cloud,
        )
    else:
        raise ConfigError(
            "no workspace is configured",
            "pass connect(workspace='/subscriptions/<sub>/resourceGroups/<rg>/providers/"
            "Microsoft.MachineLearningServices/workspaces/<ws>') or set SPARK_AML_BRIDGE_WORKSPACE "
            "(an ARM id or the azureml:// tracking URI from `az ml workspace show --query "
            "mlflow_tracking_uri`)",
        )
    if need_host_for and address.host is None:
        raise ConfigError(
            f"{need_host_for} needs the workspace's API host, and {address} gives none",
            "pass --region <workspace region> (region=), or the workspace's azureml:// tracking "
            "URI from `az ml workspace show --query mlflow_tracking_uri`",
        )
    return address


# --- host resolution through ARM ----------------------------------------------------------------

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
    label = address._label
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
    location = _normalize_region(str(body.get("location") or ""))
    location = location if _REGION_RE.match(location) else None
    uri = props.get("mlFlowTrackingUri")
    if uri:
        # Private-link workspaces have their own host here; never build it when ARM gives it.
        try:
            found = parse_workspace(str(uri))
        except WorkspaceAddressError as exc:
            raise WorkspaceAddressError(
                f"ARM gave workspace {label} a tracking URI that cannot be used: {exc.problem}",
                f"give the tracking URI yourself (`{_SHOW_CMD}`)",
            ) from None
        if found.host is None:  # an ARM-id-shaped value: no host in it
            raise WorkspaceAddressError(
                f"ARM gave workspace {label} a tracking URI without a host",
                f"give the tracking URI yourself (`{_SHOW_CMD}`)",
            )
        return found.host, found.region or location
    if location:
        cloud = cloud_for_arm_endpoint(endpoint) or get_cloud(DEFAULT_CLOUD)
        return cloud.aml_host(location), location
    raise WorkspaceAddressError(
        f"ARM's answer for workspace {label} has neither properties.mlFlowTrackingUri nor location",
        f"give the tracking URI yourself (`{_SHOW_CMD}`)",
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
    label = address._label
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
