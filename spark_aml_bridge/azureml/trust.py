"""Which hosts may receive a workspace's bearer token (an ARM token: worth all its identity may do).

Trusted: hosts of workspaces this process connected to (as given, or as ARM resolved them, so
private-link hosts are included); hosts the process was configured with (the ``workspace``,
``dual_primary`` and ``dual_mirror`` settings, ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``
from its environment); the current cloud's Azure ML API hosts (clouds.py); and the
``trusted_hosts`` setting. Any other host named in an ``azureml://`` URI (an experiment's artifact
location, a model version's source, a tracking or registry URI set in code) gets no request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class UntrustedHostError(ConfigError):
    """An ``azureml://`` URI names a host that may not receive the workspace's token."""


def _netlocs(uri: str | None) -> Iterable[str]:
    """Hosts named by a configured URI; ``dual:?primary=…&mirror=…`` names two."""
    if not uri or "://" not in uri and not uri.startswith("dual:"):
        return
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() == "dual":
        for _, value in parse_qsl(parts.query):
            yield from _netlocs(value)
        return
    if parts.scheme.lower() in ("azureml", "https") and parts.netloc:
        yield parts.netloc.rsplit("@", 1)[-1].lower()


def _split_hosts(raw: str | None) -> set[str]:
    return {h.strip().lower() for h in (raw or "").split(",") if h.strip()}


def configured_hosts(config: BridgeConfig, environ: dict[str, str] | None = None) -> set[str]:
    environ = dict(os.environ if environ is None else environ)
    hosts = set(_split_hosts(config.trusted_hosts))
    for value in (config.workspace, config.dual_primary, config.dual_mirror):
        hosts.update(_netlocs(value))
    for name in _URI_ENV:
        hosts.update(_netlocs(environ.get(name)))
    return hosts


def is_cloud_api_host(netloc: str, cloud_name: str | None) -> bool:
    """``<region>.api.azureml.ms`` (and private-link ``<id>.workspace.<region>.…``) on 443."""
    from spark_aml_bridge.clouds import get_cloud

    host, _, port = netloc.lower().partition(":")
    if port not in ("", "443"):
        return False
    cloud = get_cloud(cloud_name)
    return any(host.endswith("." + s) for s in (cloud.aml_api_suffix, *cloud.legacy_aml_suffixes))


def require_trusted(netloc: str, config: BridgeConfig, what: str) -> None:
    """Raise unless ``netloc`` may receive the workspace's token; nothing is sent before."""
    from spark_aml_bridge.azureml.hosts import is_workspace_host

    netloc = netloc.lower()
    if (
        is_workspace_host(netloc)
        or netloc in configured_hosts(config)
        or is_cloud_api_host(netloc, config.cloud)
    ):
        return
    from spark_aml_bridge.clouds import get_cloud

    cloud = get_cloud(config.cloud)
    raise UntrustedHostError(
        f"{what} names host {netloc!r}, which is not a workspace this process connected to, "
        f"nor configured, nor an Azure ML API host of {cloud.name} (*.{cloud.aml_api_suffix}); "
        "no request was sent to it, so no token left this process",
        f"if {netloc} is a workspace you trust, connect() to it, or add it to the trusted_hosts "
        "setting (SPARK_AML_BRIDGE_TRUSTED_HOSTS=host[:port],… or spark.aml.bridge.trustedHosts)",
    )


def check_ca_bundle(path: str | None, source: str | None = None) -> None:
    """A ca_bundle that is missing, unreadable or holds no certificate is named as such before
    any token is requested (else it surfaces as a misleading credential or TLS failure)."""
    if not path:
        return
    where = f"setting ca_bundle ({source or 'SPARK_AML_BRIDGE_CA_BUNDLE'})"
    fix = (
        "set SPARK_AML_BRIDGE_CA_BUNDLE (ca_bundle=) to a readable PEM file with the CA that "
        "signed the workspace's, ARM's and the authority's certificates, or unset it"
    )
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except FileNotFoundError:
        raise ConfigError(f"the CA bundle {path!r} of {where} does not exist", fix) from None
    except IsADirectoryError:
        raise ConfigError(f"the CA bundle {path!r} of {where} is a directory", fix) from None
    except OSError as exc:
        raise ConfigError(
            f"the CA bundle {path!r} of {where} cannot be read: {exc.strerror or exc}", fix
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ConfigError(
            f"the CA bundle {path!r} of {where} holds no PEM certificate", fix
        ) from None
