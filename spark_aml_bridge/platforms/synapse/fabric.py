"""Microsoft Fabric Spark (and Python) notebooks: detected and reported, tracked like Synapse.

Fabric sets the same ``AZURE_SERVICE`` as Synapse, so it is detected first, by its own markers
(see ``signals.py``). Its ``notebookutils`` has Synapse's credential verbs, so the
Synapse credential sources serve it where they work; what does not is said in one sentence each.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.platforms.base import PlatformContext
from spark_aml_bridge.platforms.synapse.credentials import (
    ARM_TOKEN_UNSUPPORTED,
    TOKEN_LIBRARY_UNSUPPORTED,
)
from spark_aml_bridge.platforms.synapse.shim import ArcadiaShim, tags_for
from spark_aml_bridge.platforms.synapse.signals import (
    FABRIC_TRACKING_SCHEME,
    PLATFORM_CONTEXT_ENV,
    PLATFORM_HINT_ENV,
    relayed_details,
    runtime_context,
    session_kind,
)
from spark_aml_bridge.spark_state import active_session

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.sources import CredentialSource

_log = logging.getLogger(__name__)

# One sentence per thing the bridge does not do on Fabric (errors and docs quote them).
DUAL_TRACKING_UNSUPPORTED = (
    "Tracking to Fabric's own MLflow (sds://) and the workspace at once (mode=dual) is not "
    "supported on Fabric: use mode=workspace, which points MLflow at the workspace only."
)
POOL_CONFIG_UNSUPPORTED = (
    "`init-script synapse` writes Synapse pool configuration; for a Fabric environment, add the "
    "package and the same spark.aml.bridge.* properties in the environment's settings by hand."
)
UNSUPPORTED = (
    ARM_TOKEN_UNSUPPORTED,
    TOKEN_LIBRARY_UNSUPPORTED,
    DUAL_TRACKING_UNSUPPORTED,
    POOL_CONFIG_UNSUPPORTED,
)

# Keys of the trident context file (and of spark.hadoop.trident.* conf) worth reporting.
_TRIDENT_KEYS = {
    "trident.workspace.id": "fabric_workspace_id",
    "trident.artifact.id": "fabric_artifact_id",
    "trident.artifact.type": "fabric_artifact_type",
    "trident.lakehouse.id": "fabric_lakehouse_id",
}
_RUNTIME_KEYS = {
    "currentWorkspaceName": "fabric_workspace",
    "currentWorkspaceId": "fabric_workspace_id",
    "currentNotebookName": "fabric_notebook",
    "userName": "user",
}


def read_trident_context(path: Path) -> dict[str, str]:
    """``key=value`` (or ``key: value``) lines of the trident context file (VERIFY its format)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        for sep in ("=", ":"):
            if sep in line:
                key, _, value = line.partition(sep)
                values[key.strip()] = value.strip()
                break
    return values


@dataclass(eq=False)
class FabricPlatform(ArcadiaShim):
    """Microsoft Fabric."""

    name = "fabric"

    def context(self) -> PlatformContext:
        signals = self.signals()
        if signals.role == "executor":
            return PlatformContext(self.name, "executor", relayed_details(signals.environ))
        details: dict[str, str] = {}
        runtime = runtime_context() if signals.role != "executor" else {}
        for key, name in _RUNTIME_KEYS.items():
            if runtime.get(key):
                details.setdefault(name, str(runtime[key]))
        trident = read_trident_context(signals.trident_context) if signals.trident_context else {}
        for key, name in _TRIDENT_KEYS.items():
            value = trident.get(key) or (signals.conf or {}).get("spark.hadoop." + key)
            if value:
                details.setdefault(name, value)
        session = active_session() if signals.role == "driver" else None
        if session is not None:
            try:
                details["spark_app_id"] = str(session.sparkContext.applicationId)
            except Exception:  # noqa: BLE001 - Spark Connect
                pass
        details["session"] = session_kind(runtime)
        return PlatformContext(self.name, signals.role, details)

    def default_credential_chain(self) -> list[str]:
        # As on Synapse, without the JVM token library (TOKEN_LIBRARY_UNSUPPORTED).
        return ["env", "key-vault-sp", "notebookutils", "relayed-token"]

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        from spark_aml_bridge.platforms.synapse.credentials import SOURCES

        return SOURCES

    def context_tags(self) -> dict[str, str]:
        return tags_for(self.context())

    def check_config(self, config: Any) -> None:
        if config.mode == "dual":
            _log.warning(DUAL_TRACKING_UNSUPPORTED)
            warnings.warn(DUAL_TRACKING_UNSUPPORTED, UserWarning, stacklevel=3)

    def native_tracking_uri(self) -> str | None:
        uri = self.signals().environ.get("MLFLOW_TRACKING_URI", "")
        return uri if uri.startswith(FABRIC_TRACKING_SCHEME) else None

    def executor_env(self) -> dict[str, str]:
        details = self.context().details
        return {PLATFORM_HINT_ENV: self.name, PLATFORM_CONTEXT_ENV: json.dumps(details)}
