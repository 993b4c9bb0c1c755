"""The dual-tracking settings, read from the one settings table (``config.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.dual.names import NameRule

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig


@dataclass(frozen=True)
class DualSettings:
    spool_dir: Path
    strict: bool = False
    names: NameRule = NameRule()
    mirror_registry: bool = False
    exit_flush_seconds: float = 10.0
    spool_max_bytes: float = 1024 * 2**20
    # Background worker pacing (not settings: tuned here).
    linger_seconds: float = 0.5
    max_backoff_seconds: float = 10.0

    @classmethod
    def from_config(cls, config: BridgeConfig) -> DualSettings:
        from spark_aml_bridge.dual.spool import default_spool_dir

        spool_dir = config.dual_spool_dir
        return cls(
            spool_dir=Path(spool_dir).expanduser() if spool_dir else default_spool_dir(),
            strict=config.dual_strict,
            names=NameRule.parse(config.dual_experiment_names),
            mirror_registry=config.dual_mirror_registry,
            exit_flush_seconds=config.dual_exit_flush_seconds,
            spool_max_bytes=config.dual_spool_max_mb * 2**20,
        )

    def with_options(self, options: dict[str, str]) -> DualSettings:
        """These settings, overridden by the options of a ``dual:`` URI."""
        from dataclasses import replace

        from spark_aml_bridge.config import parse_bool

        changes: dict[str, Any] = {}
        if options.get("spool"):
            changes["spool_dir"] = Path(options["spool"]).expanduser()
        if options.get("strict"):
            changes["strict"] = parse_bool(options["strict"])
        return replace(self, **changes) if changes else self

    @classmethod
    def current(cls) -> DualSettings:
        """From env / Spark conf (what ``connect()`` exported, or a zero-code setup)."""
        from spark_aml_bridge.config import resolve_config

        return cls.from_config(resolve_config({}))
