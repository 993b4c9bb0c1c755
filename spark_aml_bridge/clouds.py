"""The Azure clouds the bridge knows: one table of endpoints per cloud.

Everything cloud-specific (ARM endpoint, AAD authority, ARM token scope, AML and blob host
suffixes) is read from here, so supporting another cloud is one new row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from spark_aml_bridge.errors import ConfigError

__all__ = [
    "CLOUDS",
    "DEFAULT_CLOUD",
    "Cloud",
    "cloud_for_aml_host",
    "cloud_for_arm_endpoint",
    "cloud_for_studio_url",
    "get_cloud",
    "is_known_authority",
]


@dataclass(frozen=True)
class Cloud:
    """Endpoints of one Azure cloud."""

    name: str
    arm_endpoint: str  # https URL, no trailing slash
    authority_host: str  # AAD host, no scheme
    arm_scope: str  # the token scope AML's MLflow endpoint and ARM both accept
    aml_api_suffix: str  # workspace hosts are "<region>.<aml_api_suffix>"
    storage_suffix: str  # blob hosts are "<account>.blob.<storage_suffix>"
    # Older tracking URIs used other regional host suffixes; still accepted when parsing.
    legacy_aml_suffixes: tuple[str, ...] = ()
    # Azure ML studio, where a person opens runs and experiments in a browser.
    studio_url: str = "https://ml.azure.com"

    def aml_host(self, region: str) -> str:
        """The regional AML API host, e.g. ``westeurope.api.azureml.ms``."""
        return f"{region}.{self.aml_api_suffix}"

    @property
    def authority(self) -> str:
        """The AAD authority as a URL, the form azure-identity's ``authority=`` takes."""
        return f"https://{self.authority_host}"


_TABLE = (
    Cloud(
        name="AzureCloud",
        arm_endpoint="https://management.azure.com",
        authority_host="login.microsoftonline.com",
        arm_scope="https://management.azure.com/.default",
        aml_api_suffix="api.azureml.ms",
        storage_suffix="core.windows.net",
        legacy_aml_suffixes=("experiments.azureml.net",),
    ),
    Cloud(
        name="AzureChinaCloud",
        arm_endpoint="https://management.chinacloudapi.cn",
        authority_host="login.chinacloudapi.cn",
        arm_scope="https://management.chinacloudapi.cn/.default",
        aml_api_suffix="api.ml.azure.cn",
        storage_suffix="core.chinacloudapi.cn",
        studio_url="https://studio.ml.azure.cn",
    ),
    Cloud(
        name="AzureUSGovernment",
        arm_endpoint="https://management.usgovcloudapi.net",
        authority_host="login.microsoftonline.us",
        arm_scope="https://management.usgovcloudapi.net/.default",
        aml_api_suffix="api.ml.azure.us",
        storage_suffix="core.usgovcloudapi.net",
        studio_url="https://ml.azure.us",
    ),
)

#: Known clouds by their canonical name (the names `az cloud list` and AZUREML_CURRENT_CLOUD use).
CLOUDS: Mapping[str, Cloud] = MappingProxyType({c.name: c for c in _TABLE})
DEFAULT_CLOUD = "AzureCloud"


def get_cloud(name: str | None = None) -> Cloud:
    """Look a cloud up by name (case-insensitive); ``None`` or empty means AzureCloud."""
    if name is None or not str(name).strip():
        return CLOUDS[DEFAULT_CLOUD]
    wanted = str(name).strip().lower()
    for cloud in _TABLE:
        if cloud.name.lower() == wanted:
            return cloud
    raise ConfigError(
        f"unknown Azure cloud {name!r}",
        f"use one of: {', '.join(CLOUDS)}",
    )


def _bare_host(value: str) -> str:
    """Host of a URL or bare host, lower-cased, with a default https port dropped."""
    value = value.strip()
    netloc = urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]
    netloc = netloc.rsplit("@", 1)[-1].lower()
    return netloc.removesuffix(":443")


def is_known_authority(host: str) -> bool:
    """True if ``host`` (bare host or URL) is the AAD authority of a known cloud.

    A False answer means a custom authority (e.g. the local emulator): MSAL's instance discovery
    would ask login.microsoftonline.com about it and fail, so callers pass
    ``disable_instance_discovery=True`` then.
    """
    if not host:
        return False
    bare = _bare_host(host)
    return any(bare == c.authority_host for c in _TABLE)


def cloud_for_arm_endpoint(endpoint: str) -> Cloud | None:
    """The cloud whose ARM endpoint this is, or None for a custom endpoint (e.g. an emulator)."""
    if not endpoint:
        return None
    bare = _bare_host(endpoint)
    for cloud in _TABLE:
        if bare == _bare_host(cloud.arm_endpoint):
            return cloud
    return None


def cloud_for_aml_host(host: str) -> Cloud | None:
    """The cloud an AML API host (``<region>.api.azureml.ms`` and the like) belongs to."""
    if not host:
        return None
    bare = _bare_host(host).split(":", 1)[0]
    for cloud in _TABLE:
        for suffix in (cloud.aml_api_suffix, *cloud.legacy_aml_suffixes):
            if bare.endswith("." + suffix):
                return cloud
    return None


def cloud_for_studio_url(url: str) -> Cloud | None:
    """The cloud whose Azure ML studio this is, or None (e.g. the emulator's MLflow UI)."""
    if not url:
        return None
    bare = _bare_host(url)
    for cloud in _TABLE:
        if bare == _bare_host(cloud.studio_url):
            return cloud
    return None
