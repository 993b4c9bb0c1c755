"""The one small interface every platform shim implements; all platform `if`s live in shims."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.spark_state import spark_role

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.sources import CredentialSource


@dataclass(frozen=True)
class PlatformContext:
    """What the shim found about where this process runs (no secrets)."""

    platform: str
    role: str  # "driver" or "executor" (a Spark TaskContext exists) or "process" (no Spark)
    details: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.details.items() if v)
        return f"{self.platform} ({self.role}{', ' + extra if extra else ''})"


class PlatformShim:
    """Base shim: answers the questions every platform must answer."""

    name = "base"

    def detect(self) -> bool:
        """Is this my platform? Cheap, never starts Spark."""
        raise NotImplementedError

    def context(self) -> PlatformContext:
        return PlatformContext(self.name, spark_role())

    def default_credential_chain(self) -> list[str]:
        """Credential source names, in the order tried when the user names none."""
        raise NotImplementedError

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        """This platform's own credential sources (generic ones are everyone's)."""
        return ()

    def context_tags(self) -> dict[str, str]:
        """Tags every new MLflow run gets on this platform."""
        ctx = self.context()
        tags = {"spark_aml_bridge.platform": ctx.platform, "spark_aml_bridge.role": ctx.role}
        tags.update({f"spark_aml_bridge.{k}": v for k, v in ctx.details.items() if v})
        return tags

    def native_tracking_uri(self) -> str | None:
        """The platform's own MLflow tracking URI, if it has one (dual tracking uses it)."""
        return None

    def platform_defaults(self) -> dict[str, Any]:
        """Setting defaults that differ on this platform."""
        return {}

    def executor_env(self) -> dict[str, str]:
        """Platform-specific environment a Spark Python worker needs to act for this platform."""
        return {}

    def check_config(self, config: Any) -> None:
        """Warn (or raise ConfigError) where settings ask for what this platform cannot do."""
        return None
