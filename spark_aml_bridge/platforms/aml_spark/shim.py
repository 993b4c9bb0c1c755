"""Azure ML serverless Spark: detected by Synapse's signals (the Arcadia variable plus Azure ML's
job variables), reported with the job's workspace, experiment and run, tracked by default to the
workspace that runs the job.

Signals (``AZUREML_ARM_*``, ``AZUREML_RUN_ID``, ``AZUREML_ARM_PROJECT_NAME``) are the ones
azure-ai-ml's on-behalf-of credential reads in a serverless Spark job; VERIFY on a live session
that an interactive (notebook-attached) session sets them too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.platforms.base import PlatformContext
from spark_aml_bridge.platforms.synapse.shim import ArcadiaShim, tags_for
from spark_aml_bridge.platforms.synapse.signals import (
    PLATFORM_CONTEXT_ENV,
    PLATFORM_HINT_ENV,
    relayed_details,
    session_kind,
)
from spark_aml_bridge.spark_state import active_session

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.sources import CredentialSource

NAME = "aml-spark"
# detail -> the job's environment variable
_JOB_ENV = {
    "aml_workspace": "AZUREML_ARM_WORKSPACE_NAME",
    "aml_experiment": "AZUREML_ARM_PROJECT_NAME",
    "aml_run_id": "AZUREML_RUN_ID",
}
# The workspace running the job: the default target when the settings name none.
_WORKSPACE_DEFAULTS = {
    "subscription_id": "AZUREML_ARM_SUBSCRIPTION",
    "resource_group": "AZUREML_ARM_RESOURCEGROUP",
    "workspace_name": "AZUREML_ARM_WORKSPACE_NAME",
}


@dataclass(eq=False)
class AmlSparkPlatform(ArcadiaShim):
    """Azure ML serverless Spark. `environ`/`conf`/`role` are for tests (default: live)."""

    name = NAME

    def detect(self) -> bool:
        signals = self.signals()
        if signals.role == "executor" and signals.hint == NAME:
            return True  # left by the driver's shim (executor_env)
        return signals.classify() == NAME

    def _environ(self) -> Any:
        return os.environ if self.environ is None else self.environ

    def context(self) -> PlatformContext:
        signals = self.signals()
        if signals.role == "executor":
            return PlatformContext(NAME, "executor", relayed_details(signals.environ))
        environ = self._environ()
        details = {key: environ[var] for key, var in _JOB_ENV.items() if environ.get(var)}
        session = active_session() if signals.role == "driver" and self.conf is None else None
        if session is not None:
            try:
                details["spark_app_id"] = str(session.sparkContext.applicationId)
            except Exception:  # noqa: BLE001 - Spark Connect
                pass
        elif (self.conf or {}).get("spark.app.id"):
            details["spark_app_id"] = str((self.conf or {})["spark.app.id"])
        details["session"] = session_kind()
        return PlatformContext(NAME, signals.role, details)

    def default_credential_chain(self) -> list[str]:
        # env: an explicit service principal always wins; then the identity the job runs as
        # (the user, or the managed identity it was given); executors: the driver's token.
        return ["env", "aml-user-identity", "aml-managed-identity", "relayed-token"]

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        from spark_aml_bridge.platforms.aml_spark.credentials import SOURCES

        return SOURCES

    def context_tags(self) -> dict[str, str]:
        return tags_for(self.context())

    def platform_defaults(self) -> dict[str, Any]:
        environ = self._environ()
        found = {name: environ.get(var) for name, var in _WORKSPACE_DEFAULTS.items()}
        return found if all(found.values()) else {}

    def executor_env(self) -> dict[str, str]:
        details = self.context().details
        return {PLATFORM_HINT_ENV: NAME, PLATFORM_CONTEXT_ENV: json.dumps(details)}
