"""Platform shims in detection order; the first whose detect() is true wins (generic last)."""

from __future__ import annotations

from spark_aml_bridge.platforms.base import PlatformContext, PlatformShim
from spark_aml_bridge.platforms.databricks.shim import DatabricksPlatform
from spark_aml_bridge.platforms.generic import GenericPlatform
from spark_aml_bridge.platforms.synapse.fabric import FabricPlatform
from spark_aml_bridge.platforms.synapse.shim import SynapsePlatform

# Later shims go before generic; Fabric must precede Synapse (both set the Arcadia variable).
_SHIMS: list[PlatformShim] = [
    FabricPlatform(),
    SynapsePlatform(),
    DatabricksPlatform(),
    GenericPlatform(),
]


def register_shim(shim: PlatformShim) -> None:
    """Add a shim ahead of the generic fallback."""
    _SHIMS.insert(len(_SHIMS) - 1, shim)


def detect_platform() -> PlatformShim:
    for shim in _SHIMS:
        if shim.detect():
            return shim
    return _SHIMS[-1]


__all__ = ["PlatformContext", "PlatformShim", "detect_platform", "register_shim"]
