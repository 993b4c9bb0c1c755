"""The workspace address: parse and format ARM ids, ``azureml://`` tracking URIs and REST URLs.

A workspace is named by subscription, resource group and workspace name. Its MLflow endpoint
lives on a host that is usually ``<region>.api.azureml.ms`` but is the workspace's own host for
private-link workspaces, so when only the ARM id is known the host is looked up in ARM
(``workspace_host.resolve_workspace_host``), the way Azure's own tools do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
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
    WorkspaceAddressError,
)

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

__all__ = [
    "WorkspaceAddress",
    "address_from_settings",
    "parse_workspace",
    "workspace_from_parts",
]


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

# --- examples shown in every error, one per form the user may be attempting ---------------------

_EX_SUB = "00000000-0000-0000-0000-000000000000"
_EX_SCOPE = (
    f"/subscriptions/{_EX_SUB}/resourceGroups/my-rg/providers/{PROVIDER}/workspaces/my-workspace"
)
_EX_ARM = _EX_SCOPE
_EX_URI = f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{_EX_SCOPE}"
_EX_REST = f"https://westeurope.api.azureml.ms/mlflow/v2.0{_EX_SCOPE}"
SHOW_URI_COMMAND = "az ml workspace show -g <rg> -n <workspace> --query mlflow_tracking_uri"
_FIXES = {
    "arm": f"give the workspace's ARM id, e.g. {_EX_ARM}",
    "uri": f"give the tracking URI as `{SHOW_URI_COMMAND}` prints it, e.g. {_EX_URI}",
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


def region_name(value: str) -> str | None:
    """An ARM location as a region name (``West Europe`` -> ``westeurope``); None if not one."""
    region = _normalize_region(value)
    return region if _REGION_RE.match(region) else None


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
            region = region_name(self.region)
            if region is None:
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
                f"the API host of workspace {self.label} is not known",
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
    def label(self) -> str:
        return f"{self.workspace_name} ({self.resource_group}, sub …{self.subscription_id[-4:]})"

    def __str__(self) -> str:
        return f"{self.label} at {self.host}" if self.host else f"{self.label} (host not resolved)"


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
            f"tracking URI (`{SHOW_URI_COMMAND}`)",
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
