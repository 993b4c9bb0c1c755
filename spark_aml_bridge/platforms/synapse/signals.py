"""Which Arcadia runtime is this: Synapse Spark pools, Fabric, or Azure ML serverless Spark?

Synapse and Microsoft Fabric both set ``AZURE_SERVICE=Microsoft.ProjectArcadia`` ("Arcadia" is
Synapse's code name), and Azure ML's serverless Spark runs on Synapse's runtime, so telling them
apart is the core of this module. The signals, strongest first:

* Fabric markers (the trident context file, an ``sds://`` MLflow URI, ``MSNOTEBOOKUTILS_*`` env,
  ``spark.hadoop.trident.*`` conf) -> Fabric (see ``fabric.py``);
* Azure ML job markers (``AZUREML_RUN_ID`` and friends) -> not Synapse (generic);
* ``spark.cluster.type`` of an *already active* Spark session: ``synapse`` -> Synapse, anything
  else with the Arcadia variable -> Fabric (SynapseML's rule);
* no active session (a plain Python process, an executor): the Arcadia variable alone.

On executors the driver's shim leaves a hint in the Python workers' environment
(``executor_env()``), which wins there. Nothing here ever starts Spark. Every signal list is a
module constant (and a constructor argument), so a runtime that differs from these public
observations can be handled without code changes elsewhere: see the VERIFY notes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_aml_bridge.spark_state import active_session, session_conf, spark_role

ARCADIA_ENV = "AZURE_SERVICE"
ARCADIA_VALUE = "Microsoft.ProjectArcadia"
CLUSTER_TYPE_KEY = "spark.cluster.type"
# Fabric (SynapseML's PlatformDetails checks this file first); tests and unusual images point the
# override variable elsewhere.
TRIDENT_CONTEXT_FILE = "/home/trusted-service-user/.trident-context"
TRIDENT_CONTEXT_ENV = "_SPARK_AML_BRIDGE_TRIDENT_CONTEXT"
FABRIC_ENV_PREFIXES: tuple[str, ...] = ("MSNOTEBOOKUTILS_",)
FABRIC_CONF_PREFIXES: tuple[str, ...] = ("spark.hadoop.trident.",)
FABRIC_TRACKING_SCHEME = "sds://"
# Azure ML jobs (serverless Spark included) set these; users set other AZUREML_* variables
# themselves (AZUREML_CURRENT_CLOUD, AZUREML_LOG_NETWORK_TRACES), so the list is explicit.
# VERIFY on a live serverless Spark session which of them it sets.
AML_SPARK_ENV: tuple[str, ...] = (
    "AZUREML_RUN_ID",
    "AZUREML_ARM_WORKSPACE_NAME",
    "AZUREML_ARM_SUBSCRIPTION",
    "AZUREML_SERVICE_ENDPOINT",
)
# Left in Spark Python workers' environment by the driver's shim (spark.py / pool configuration).
PLATFORM_HINT_ENV = "_SPARK_AML_BRIDGE_PLATFORM"
PLATFORM_CONTEXT_ENV = "_SPARK_AML_BRIDGE_PLATFORM_CONTEXT"
# connect() replaces MLFLOW_TRACKING_URI, so an sds:// URI seen once in this process is remembered.
_sds_seen = False

# Spark conf keys seen in public Synapse code (VERIFY on current runtimes); the notebook
# utilities' env functions are preferred when importable.
SYNAPSE_CONF_KEYS: dict[str, tuple[str, ...]] = {
    "synapse_workspace": ("spark.synapse.workspace.name",),
    "synapse_pool": ("spark.synapse.pool.name",),
}
NOTEBOOK_ENV_FUNCTIONS = {
    "synapse_workspace": "getWorkspaceName",
    "synapse_pool": "getPoolName",
    "job_id": "getJobId",
    "user": "getUserName",
}


# --- signals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArcadiaSignals:
    """What detection looks at, gathered once (so tests can hand it in whole)."""

    environ: Mapping[str, str]
    role: str  # driver | executor | process
    conf: Mapping[str, str] | None = None  # of an active session; None when there is none
    trident_context: Path | None = None  # the Fabric context file, when it exists
    sds_seen: bool = False  # this process saw an sds:// MLFLOW_TRACKING_URI before

    @property
    def arcadia(self) -> bool:
        return self.environ.get(ARCADIA_ENV) == ARCADIA_VALUE

    @property
    def hint(self) -> str | None:
        return self.environ.get(PLATFORM_HINT_ENV) or None

    def fabric_markers(self) -> list[str]:
        found = []
        if self.trident_context is not None:
            found.append(f"file {self.trident_context}")
        if self.sds_seen or self.environ.get("MLFLOW_TRACKING_URI", "").startswith(
            FABRIC_TRACKING_SCHEME
        ):
            found.append("sds:// MLFLOW_TRACKING_URI")
        found.extend(
            f"env {name}" for name in sorted(self.environ) if name.startswith(FABRIC_ENV_PREFIXES)
        )
        found.extend(
            f"conf {key}" for key in sorted(self.conf or {}) if key.startswith(FABRIC_CONF_PREFIXES)
        )
        return found

    def aml_markers(self) -> list[str]:
        return [name for name in AML_SPARK_ENV if self.environ.get(name)]

    def classify(self) -> str | None:
        """``fabric``, ``synapse``, ``aml-spark`` or None (none of them)."""
        if self.role == "executor" and self.hint in ("synapse", "fabric"):
            return self.hint
        if self.fabric_markers():
            return "fabric"
        if not self.arcadia:
            return None
        if self.aml_markers():
            return "aml-spark"
        cluster_type = (self.conf or {}).get(CLUSTER_TYPE_KEY)
        if cluster_type is None:
            return "synapse"  # no active session to ask: the Arcadia variable decides
        # SynapseML: Arcadia + spark.cluster.type != "synapse" is "synapse_internal", i.e. Fabric.
        return "synapse" if cluster_type == "synapse" else "fabric"


def trident_context_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(TRIDENT_CONTEXT_ENV) or TRIDENT_CONTEXT_FILE)


def gather_signals(
    environ: Mapping[str, str] | None = None,
    conf: Mapping[str, str] | None = None,
    role: str | None = None,
) -> ArcadiaSignals:
    global _sds_seen
    live = environ is None
    environ = os.environ if environ is None else environ
    if live and environ.get("MLFLOW_TRACKING_URI", "").startswith(FABRIC_TRACKING_SCHEME):
        _sds_seen = True
    role = spark_role() if role is None else role
    if conf is None and role == "driver":
        session = active_session()
        if session is not None:
            conf = session_conf(session, (CLUSTER_TYPE_KEY,))
    path = trident_context_path(environ)
    try:
        trident = path if path.is_file() else None
    except OSError:
        trident = None
    return ArcadiaSignals(environ, role, conf, trident, live and _sds_seen)


# --- the notebook utilities (notebookutils / mssparkutils) ------------------------------------


def notebook_utils(part: str) -> Any:
    """The runtime's ``credentials``/``env``/``runtime`` utilities, or None where absent.

    Fabric and newer runtimes expose ``notebookutils.<part>``; Synapse documents
    ``from notebookutils import mssparkutils`` then ``mssparkutils.<part>``.
    """
    for name in ("notebookutils", "mssparkutils"):
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - absent, or a runtime module failing off-platform
            continue
        for holder in (module, getattr(module, "mssparkutils", None)):
            found = getattr(holder, part, None) if holder is not None else None
            if found is not None:
                return found
    return None


def call_quietly(obj: Any, name: str) -> str | None:
    try:
        value = getattr(obj, name)()
    except Exception:  # noqa: BLE001 - context is best effort
        return None
    return str(value) if value not in (None, "") else None


def runtime_context() -> Mapping[str, Any]:
    """``notebookutils.runtime.context`` as a mapping (empty where absent)."""
    runtime = notebook_utils("runtime")
    context = getattr(runtime, "context", None) if runtime is not None else None
    if callable(context):
        try:
            context = context()
        except Exception:  # noqa: BLE001
            context = None
    return context if isinstance(context, Mapping) else {}


def session_kind(context: Mapping[str, Any] | None = None) -> str:
    """``pipeline`` (a notebook activity), ``notebook`` (interactive) or ``batch`` (a job)."""
    context = runtime_context() if context is None else context
    flag = context.get("isForPipeline", context.get("isforpipeline"))
    if str(flag).lower() == "true":
        return "pipeline"
    ipython = sys.modules.get("IPython")
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        return "notebook"
    return "batch"


def relayed_details(environ: Mapping[str, str]) -> dict[str, str]:
    try:
        data = json.loads(environ.get(PLATFORM_CONTEXT_ENV) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items() if v} if isinstance(data, dict) else {}
