"""A workspace session: one workspace address, one credential, one token cache, per process.

Both ``connect()`` and the zero-code path (MLflow building our ``azureml`` store from
``MLFLOW_TRACKING_URI``) end here, so they behave the same. Importing this module is cheap.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig
    from spark_aml_bridge.credentials.sources import BuiltCredential
    from spark_aml_bridge.credentials.token_cache import TokenCache
    from spark_aml_bridge.platforms.base import PlatformShim
    from spark_aml_bridge.workspace import WorkspaceAddress

_lock = threading.RLock()
_sessions: dict[tuple[str, str], WorkspaceSession] = {}
_token_caches: dict[tuple[Any, ...], TokenCache] = {}
_capabilities: dict[tuple[str, str], dict[str, bool]] = {}


@dataclass
class WorkspaceSession:
    config: BridgeConfig
    platform: PlatformShim
    address: WorkspaceAddress
    credential: BuiltCredential
    tokens: TokenCache
    ca_bundle: str | None
    authority: str

    @property
    def tracking_uri(self) -> str:
        return self.address.tracking_uri()

    @property
    def capabilities(self) -> dict[str, bool]:
        """What this workspace turned out to support (e.g. "logged_models": MLflow 3's
        logged-model API, which AML answers with 404); one dict per workspace per process, shared
        by every session and store of that workspace."""
        with _lock:
            return _capabilities.setdefault(session_key(self.address), {})

    @property
    def identity(self) -> str:
        """Who the token says we are, plus where the credential came from (never the token)."""
        from spark_aml_bridge.credentials.identity import describe_identity, token_claims
        from spark_aml_bridge.errors import BridgeError

        try:
            claims = token_claims(self.tokens.token())
        except BridgeError:  # a repr must never raise: say what we know
            return f"{self.credential.description} (no valid token right now)"
        return describe_identity(claims, self.credential.description)


def session_key(address: WorkspaceAddress) -> tuple[str, str]:
    return ((address.host or "").lower(), address.scope_path.lower())


def any_active() -> bool:
    return bool(_sessions)


def sessions() -> list[WorkspaceSession]:
    with _lock:
        return list(_sessions.values())


def open_session(
    config: BridgeConfig,
    platform: PlatformShim,
    *,
    environ: dict[str, str] | None = None,
    probe: bool = True,
) -> WorkspaceSession:
    """Resolve the address and credential of `config`, fetch a first token, register the host."""
    from spark_aml_bridge.azureml.hosts import register_workspace, restore_workspace
    from spark_aml_bridge.azureml.probe import probe_workspace
    from spark_aml_bridge.azureml.trust import check_ca_bundle
    from spark_aml_bridge.clouds import get_cloud
    from spark_aml_bridge.credentials.sources import SourceContext, select_credential
    from spark_aml_bridge.platforms.registry import credential_sources
    from spark_aml_bridge.workspace import resolve_workspace_host

    environ = dict(os.environ if environ is None else environ)
    check_ca_bundle(config.ca_bundle, config.source("ca_bundle"))
    address = address_from_config(config)
    cloud = get_cloud(config.cloud)
    context = SourceContext.for_config(config, environ)
    authority, ca_bundle = context.authority, context.ca_bundle
    built = select_credential(
        config.credential, context, platform.default_credential_chain(), credential_sources()
    )
    if address.host is not None:
        reused = _reusable(address, built, ca_bundle)
        if reused is not None:
            return replace(reused, config=config, platform=platform)
    tokens = token_cache_for(built, cloud.arm_scope, config.token_refresh_margin)
    tokens.token()  # fail here, with the fix named, rather than at the first MLflow call
    if address.host is None:
        address = resolve_workspace_host(
            address,
            tokens,
            arm_endpoint=(config.arm_endpoint or cloud.arm_endpoint),
            scope=cloud.arm_scope,
            ca_bundle=ca_bundle,
        )
        reused = _reusable(address, built, ca_bundle)
        if reused is not None:
            return replace(reused, config=config, platform=platform)
    session = WorkspaceSession(config, platform, address, built, tokens, ca_bundle, authority)
    previous = register_workspace(address.host, address.scope_path, tokens, session.identity)
    if probe:
        try:
            probe_workspace(address, ca_bundle)
        except BaseException:
            # A refused identity must not replace the one this workspace was connected with.
            restore_workspace(address.host or "", address.scope_path, previous)
            raise
    with _lock:
        _sessions[session_key(address)] = session
    return session


def _reusable(
    address: WorkspaceAddress, built: BuiltCredential, ca_bundle: str | None
) -> WorkspaceSession | None:
    """An open session for the same workspace, identity and trust: reconnecting stays cheap."""
    with _lock:
        existing = _sessions.get(session_key(address))
    if (
        existing is not None
        and existing.credential.cache_key == built.cache_key
        and existing.ca_bundle == ca_bundle
    ):
        return existing
    return None


def address_from_config(config: BridgeConfig) -> WorkspaceAddress:
    """The address the settings describe (workspace.address_from_settings, the one builder)."""
    from spark_aml_bridge.workspace import address_from_settings

    return address_from_settings(config)


def session_for_store_uri(store_uri: str) -> WorkspaceSession:
    """The session for an ``azureml://`` URI MLflow was given: reuse one or open it from env."""
    from spark_aml_bridge.azureml.trust import require_trusted
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms import detect_platform
    from spark_aml_bridge.workspace import parse_workspace

    address = parse_workspace(store_uri)
    with _lock:
        existing = _sessions.get(session_key(address))
        if existing is not None:
            return existing
        # Zero-code: settings come from env / Spark conf; the URI names the workspace.
        platform = detect_platform()
        config = resolve_config({}, platform_defaults=platform.platform_defaults())
        require_trusted(address.host or "", config, f"the azureml:// URI {_shown(address)}")
        return open_session(config.replace(workspace=store_uri), platform)


def _shown(address: WorkspaceAddress) -> str:
    return f"azureml://{address.host}/…/workspaces/{address.workspace_name}"


def token_cache_for(built: BuiltCredential, scope: str, margin: float) -> TokenCache:
    """One token cache per identity and scope per process, so reconnecting stays warm."""
    from spark_aml_bridge.credentials.token_cache import TokenCache

    key = (built.cache_key, scope)
    with _lock:
        cache = _token_caches.get(key)
        if cache is None:
            cache = TokenCache(
                built.factory, scope, refresh_margin=margin, description=built.description
            )
            _token_caches[key] = cache
        return cache


# The session of the live connect() (set by bridge.py): stores MLflow caches per URI follow the
# settings of the latest connect() to their workspace, without importing the bridge.
_connected: WorkspaceSession | None = None


def set_connected(session: WorkspaceSession | None) -> None:
    global _connected
    _connected = session


def connected_session() -> WorkspaceSession | None:
    """The session of the live ``connect()``, if there is one."""
    return _connected


def _reset_for_tests() -> None:
    with _lock:
        _sessions.clear()
        _token_caches.clear()
