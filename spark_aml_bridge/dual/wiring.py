"""``connect(mode="dual")``: which URI each side is, and what the bridge hands to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.dual.uri import describe, dual_uri
from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig
    from spark_aml_bridge.platforms.base import PlatformShim
    from spark_aml_bridge.session import WorkspaceSession


def resolve_side(value: str, which: str, platform: PlatformShim, session: WorkspaceSession) -> str:
    """`native`, `workspace`, or a tracking URI, as a tracking URI."""
    return _side(value, which, session.tracking_uri, platform.native_tracking_uri(), platform.name)


def zero_code_tracking_uri(
    config: BridgeConfig, workspace_uri: str, native_uri: str | None, platform_name: str = ""
) -> str:
    """``MLFLOW_TRACKING_URI`` for zero-code setups (init scripts, pool configuration, job
    payloads): `workspace_uri` itself, or with ``mode=dual`` the ``dual:`` URI built from it and
    the target platform's `native_uri` (e.g. ``databricks``)."""
    if config.mode != "dual":
        return workspace_uri
    primary = _side(config.dual_primary, "primary", workspace_uri, native_uri, platform_name)
    mirror = _side(config.dual_mirror, "mirror", workspace_uri, native_uri, platform_name)
    return dual_uri(
        primary,
        mirror,
        spool=config.dual_spool_dir or None,
        strict="true" if config.dual_strict else None,
    )


def _side(
    value: str, which: str, workspace_uri: str, native_uri: str | None, platform_name: str
) -> str:
    value = (value or "").strip()
    if value == "workspace":
        return workspace_uri
    if value == "native":
        uri = native_uri
        if not uri:
            raise ConfigError(
                f"dual tracking: the {which} is 'native', but this platform ({platform_name}) has "
                "no MLflow tracking of its own",
                f"set dual_{which} (SPARK_AML_BRIDGE_DUAL_{which.upper()}) to an MLflow tracking "
                "URI, e.g. a team's server (https://mlflow.example.com) or a local store "
                "(sqlite:////dbfs/…/mlflow.db)",
            )
        return uri
    if not value:
        raise ConfigError(
            f"dual tracking: no {which} is set",
            f"set dual_{which} to native, workspace, or an MLflow tracking URI",
        )
    return value


@dataclass
class DualHandle:
    """The dual-tracking side of a bridge: both URIs, and the mirror's state."""

    primary_uri: str
    mirror_uri: str
    tracking_uri: str
    registry_uri: str

    def _store(self) -> Any:
        from spark_aml_bridge.mlflow_private import cached_tracking_store

        return cached_tracking_store(self.tracking_uri)

    def status(self) -> dict[str, Any]:
        """This process's spool: pending writes and metrics, size, dead letters, last error."""
        return self._store().mirror_status()

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until the mirror has every write of this process (True), or `timeout` (False)."""
        return self._store().flush_mirror(timeout)

    def verify(
        self, *, run_ids: list[str] | None = None, experiment_ids: list[str] | None = None
    ) -> list[Any]:
        from spark_aml_bridge.dual.api import Scope, verify

        scope = Scope(run_ids=list(run_ids or []), experiment_ids=list(experiment_ids or []))
        return verify(scope, primary_uri=self.primary_uri, mirror_uri=self.mirror_uri)

    def backfill(
        self, *, run_ids: list[str] | None = None, experiment_ids: list[str] | None = None
    ) -> list[Any]:
        from spark_aml_bridge.dual.api import Scope, backfill

        scope = Scope(run_ids=list(run_ids or []), experiment_ids=list(experiment_ids or []))
        return backfill(scope, primary_uri=self.primary_uri, mirror_uri=self.mirror_uri)

    def describe(self) -> str:
        return f"primary={describe(self.primary_uri)}, mirror={describe(self.mirror_uri)}"


def dual_tracking(
    config: BridgeConfig, platform: PlatformShim, session: WorkspaceSession
) -> DualHandle:
    primary = resolve_side(config.dual_primary, "primary", platform, session)
    mirror = resolve_side(config.dual_mirror, "mirror", platform, session)
    uri = zero_code_tracking_uri(config, session.tracking_uri, platform.native_tracking_uri())
    # Registrations go to the primary's registry (models are mirrored with their runs).
    registry = uri if config.dual_mirror_registry else primary
    return DualHandle(primary, mirror, uri, registry)


def start(handle: DualHandle) -> None:
    """Build the dual store now: opens this process's spool (a new one if an earlier one was
    closed) and replays spools left behind."""
    handle._store().link  # noqa: B018


def extend_executor_env(link: Any, env: dict[str, str]) -> None:
    """Add entries to the environment a spark.py ExecutorLink gives Python workers (undone with
    it): executors of a dual bridge track to the dual URI."""
    if link is None:
        return
    for key, value in env.items():
        link._previous.setdefault(key, link._sc.environment.get(key))
        link._sc.environment[key] = value
