"""Named credential sources, the default chain, and the one error when every source fails.

A source is a small named strategy: the settings it needs and a function that returns an
azure-identity ``TokenCredential`` or says why it cannot (``CredentialUnavailable``). An explicit
choice (``credential="managed-identity"``) and the platform's default chain use the same names.
Which sources exist is the platforms' business (``platforms/registry.py``): callers pass them in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spark_aml_bridge.errors import ConfigError, CredentialError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from spark_aml_bridge.config import BridgeConfig


class CredentialUnavailable(Exception):
    """This source cannot work here; the message says why (it never holds a secret)."""


@dataclass(frozen=True)
class SourceContext:
    """What a source may use to build its credential."""

    config: BridgeConfig
    environ: dict[str, str]
    authority: str  # https://host of the Azure AD authority
    custom_authority: bool  # not a public Azure cloud authority: skip MSAL instance discovery
    ca_bundle: str | None

    @classmethod
    def for_config(cls, config: BridgeConfig, environ: Mapping[str, str]) -> SourceContext:
        """The context for `config`: its authority (and whether it is custom) and CA bundle."""
        authority, custom = authority_for(config, environ)
        return cls(config, dict(environ), authority, custom, config.ca_bundle)

    def azure_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every azure-identity credential we build receives."""
        kwargs: dict[str, Any] = {}
        if self.ca_bundle:
            kwargs["connection_verify"] = self.ca_bundle
        return kwargs

    def aad_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for credentials that talk to the authority (Azure AD) directly."""
        kwargs = self.azure_kwargs()
        kwargs["authority"] = self.authority
        if self.custom_authority:
            # MSAL would otherwise ask login.microsoftonline.com to validate the authority.
            kwargs["disable_instance_discovery"] = True
        return kwargs


@dataclass
class BuiltCredential:
    """A credential ready to use, with a factory so a fresh instance can bypass its cache."""

    factory: Callable[[], TokenCredential]
    description: str  # human, no secrets: "service principal 1b2c… (tenant 72f9…) from env"
    source: str  # the source name
    cache_key: tuple[Any, ...]  # identifies this identity for the process-wide token cache
    executor_reusable: bool = False  # can be rebuilt on a Spark executor without shipping secrets


@dataclass(frozen=True)
class CredentialSource:
    name: str
    summary: str
    requires: tuple[str, ...]
    build: Callable[[SourceContext, str | None], BuiltCredential]
    explicit_only: bool = False  # interactive sources never join a default chain


def authority_for(config: BridgeConfig, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The Azure AD authority as https://host, and whether it is a custom (non-Azure) one."""
    from spark_aml_bridge.clouds import get_cloud, is_known_authority

    cloud = get_cloud(config.cloud)
    raw = config.authority or environ.get("AZURE_AUTHORITY_HOST") or cloud.authority_host
    url = raw if "://" in raw else f"https://{raw}"
    host = urlparse(url).netloc
    return url.rstrip("/"), not is_known_authority(host)


@dataclass
class ChainAttempt:
    tried: list[tuple[str, str]] = field(default_factory=list)


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, arg = spec.strip().partition(":")
    return name.strip().lower(), (arg.strip() or None)


def select_credential(
    spec: Any,
    context: SourceContext,
    default_chain: Iterable[str],
    sources: Mapping[str, CredentialSource],
) -> BuiltCredential:
    """Build the credential `spec` names (one of `sources`), or the first available one of
    `default_chain`."""
    if spec is not None and not isinstance(spec, str):
        if not hasattr(spec, "get_token"):
            raise ConfigError(
                f"credential= got a {type(spec).__name__}, which is not a TokenCredential",
                "pass an azure-identity credential object or a spec string such as 'env'",
            )
        return BuiltCredential(
            factory=lambda: spec,
            description=f"{type(spec).__name__} (given to connect)",
            source="given",
            cache_key=("given", id(spec)),
        )
    name, arg = parse_spec(spec or "auto")
    if name != "auto":
        source = sources.get(name)
        if source is None:
            raise ConfigError(
                f"unknown credential '{name}'",
                "use one of: auto, " + ", ".join(sorted(sources)),
            )
        try:
            return source.build(context, arg)
        except CredentialUnavailable as exc:
            raise CredentialError(
                f"credential '{name}' ({source.summary}) is unavailable: {exc}",
                _requires_line(source),
            ) from None

    attempt = ChainAttempt()
    for candidate in default_chain:
        source = sources[candidate]
        if source.explicit_only:
            continue
        try:
            return source.build(context, None)
        except CredentialUnavailable as exc:
            attempt.tried.append((candidate, str(exc)))
    lines = "\n".join(f"    - {n}: {why}" for n, why in attempt.tried)
    raise CredentialError(
        "no credential is available; tried, in order:\n" + lines,
        "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal, "
        "or choose a source with SPARK_AML_BRIDGE_CREDENTIAL / credential= (one of: "
        + ", ".join(sorted(sources))
        + ")",
    )


def _requires_line(source: CredentialSource) -> str:
    if not source.requires:
        return f"choose another credential with SPARK_AML_BRIDGE_CREDENTIAL ({source.summary})"
    return "provide " + ", ".join(source.requires)
