"""The platforms, in detection order, and what is gathered from all of them.

The first shim whose ``detect()`` is true wins. Fabric precedes Synapse (both set the Arcadia
variable) and Azure ML serverless Spark precedes Synapse (it runs Synapse's runtime); generic is
the fallback and stays last. Adding a platform is one line here (see ``platforms/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from spark_aml_bridge.credentials import generic
from spark_aml_bridge.platforms.aml_spark.shim import AmlSparkPlatform
from spark_aml_bridge.platforms.base import PlatformShim
from spark_aml_bridge.platforms.databricks.shim import DatabricksPlatform
from spark_aml_bridge.platforms.generic import GenericPlatform
from spark_aml_bridge.platforms.synapse.fabric import FabricPlatform
from spark_aml_bridge.platforms.synapse.shim import SynapsePlatform

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig
    from spark_aml_bridge.credentials.sources import BuiltCredential, CredentialSource

_SHIMS: list[PlatformShim] = [
    FabricPlatform(),
    AmlSparkPlatform(),
    SynapsePlatform(),
    DatabricksPlatform(),
    GenericPlatform(),
]


def shims() -> list[PlatformShim]:
    return list(_SHIMS)


def register_shim(shim: PlatformShim) -> None:
    """Add a shim ahead of the generic fallback (a platform living outside this package)."""
    _SHIMS.insert(len(_SHIMS) - 1, shim)


def detect_platform() -> PlatformShim:
    for shim in _SHIMS:
        if shim.detect():
            return shim
    return _SHIMS[-1]


def credential_sources() -> dict[str, CredentialSource]:
    """Every credential source by name: the generic ones and every platform's.

    All of them, whatever platform this is: an explicit ``credential=`` may name any (the source
    itself then says why it cannot work here).
    """
    found = {source.name: source for source in generic.SOURCES}
    for shim in _SHIMS:
        found.update((source.name, source) for source in shim.credential_sources())
    return found


def select_credential_for(
    config: BridgeConfig,
    environ: Mapping[str, str],
    platform: PlatformShim | None = None,
) -> BuiltCredential:
    """The credential `config` asks for, else the first available of the platform's chain."""
    from spark_aml_bridge.credentials.sources import SourceContext, select_credential

    platform = detect_platform() if platform is None else platform
    context = SourceContext.for_config(config, environ)
    return select_credential(
        config.credential, context, platform.default_credential_chain(), credential_sources()
    )
