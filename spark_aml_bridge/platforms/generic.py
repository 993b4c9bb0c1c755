"""A plain Python or Spark process (a laptop, a VM, CI, local Spark)."""

from __future__ import annotations

from spark_aml_bridge.platforms.base import PlatformShim


class GenericPlatform(PlatformShim):
    name = "generic"

    def detect(self) -> bool:
        return True

    def default_credential_chain(self) -> list[str]:
        return ["env", "managed-identity-env", "relayed-token", "azure-cli"]
