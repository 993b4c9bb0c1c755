"""Databricks: detection, context, credential chain and native tracking URI. Never starts Spark.

Detection (cheap): ``DATABRICKS_ENV_VERSION`` (serverless, reported as ``client.<N>``),
``DATABRICKS_RUNTIME_VERSION``, or the ``/databricks/DBR_VERSION`` file that Databricks Container
Services images have instead of the variable.

Context, read the way MLflow reads it, first answer wins: the runtime's REPL context
(``dbruntime.databricks_repl_context``), the ``dbutils`` notebook command context, the Spark conf
of an already active session (``spark.databricks.clusterUsageTags.*``,
``spark.databricks.workspaceUrl``); on executors, task-local properties and what the driver
handed over (``executor_env``).

Credential chain (see ``platforms.databricks.credentials``): sources named by the bridge's
settings first, then what the cluster provides, then generic fallbacks::

    databricks-secret-scope, databricks-service-credential, databricks-env,
    databricks-passthrough, relayed-token, managed-identity-env, azure-cli
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.platforms.base import PlatformContext, PlatformShim
from spark_aml_bridge.platforms.databricks.runtime import (
    DBR_VERSION_FILE,
    command_context,
    find_dbutils,
    is_serverless_version,
    option_value,
    repl_context,
    runtime_version,
    spark_connect_mode,
)
from spark_aml_bridge.spark_state import active_conf_values, task_context

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig
    from spark_aml_bridge.credentials.sources import CredentialSource

_log = logging.getLogger(__name__)

# What the driver hands its executors about where they run (no secrets), as JSON.
CONTEXT_ENV = "_SPARK_AML_BRIDGE_DATABRICKS_CONTEXT"
NATIVE_TRACKING_URI = "databricks"

CREDENTIAL_CHAIN = (
    # Named by the bridge's settings: the user asked for exactly this identity.
    "databricks-secret-scope",
    "databricks-service-credential",
    # Provided by the cluster: env vars (with {{secrets/...}} references) set by its config.
    "databricks-env",
    # Legacy and deprecated (DBR 15+), driver only.
    "databricks-passthrough",
    # Executors of a driver whose identity cannot be rebuilt there; then generic fallbacks.
    "relayed-token",
    "managed-identity-env",
    "azure-cli",
)

_JOB_CLUSTER_NAME = re.compile(r"^job-(?P<job>\d+)-run-(?P<run>\d+)")
_CONF = {
    "cluster_id": "spark.databricks.clusterUsageTags.clusterId",
    "cluster_name": "spark.databricks.clusterUsageTags.clusterName",
    "org_id": "spark.databricks.clusterUsageTags.orgId",
    "spark_version": "spark.databricks.clusterUsageTags.sparkVersion",
    "workspace_url": "spark.databricks.workspaceUrl",
}
# Task-local properties the runtime attaches to jobs launched from a notebook (VERIFY job ids).
_LOCAL = {
    "notebook_id": "spark.databricks.notebook.id",
    "notebook_path": "spark.databricks.notebook.path",
    "job_id": "spark.databricks.job.id",
    "job_run_id": "spark.databricks.job.runId",
}
# Order of the details (and so of `describe()` and tags).
FIELDS = (
    "runtime",
    "compute",
    "workload",
    "container",
    "workspace_url",
    "org_id",
    "cluster_id",
    "cluster_name",
    "notebook_path",
    "notebook_id",
    "job_id",
    "job_run_id",
    "user",
)
# Details that executors receive from the driver (they have no dbutils and no session).
_HANDED = (
    "workspace_url",
    "org_id",
    "cluster_id",
    "cluster_name",
    "notebook_path",
    "notebook_id",
    "job_id",
    "job_run_id",
    "user",
)
# MLflow's own tag names for the same facts (mlflow/utils/mlflow_tags.py), so the workspace UI
# shows them where MLflow on Databricks would.
_MLFLOW_TAGS = {
    "workspace_url": "mlflow.databricks.workspaceURL",
    "org_id": "mlflow.databricks.workspaceID",
    "cluster_id": "mlflow.databricks.cluster.id",
    "notebook_path": "mlflow.databricks.notebookPath",
    "notebook_id": "mlflow.databricks.notebookID",
    "job_id": "mlflow.databricks.jobID",
    "job_run_id": "mlflow.databricks.jobRunID",
    "user": "mlflow.user",
}


# -- reading the runtime's context ------------------------------------------------------------


def _ctx_call(ctx: Any, name: str) -> Any:
    try:
        return option_value(getattr(ctx, name)())
    except Exception:  # noqa: BLE001
        return None


def _ctx_tag(ctx: Any, key: str) -> Any:
    try:
        return option_value(ctx.tags().get(key))
    except Exception:  # noqa: BLE001
        return None


def _ctx_extra(ctx: Any, key: str) -> Any:
    try:
        return option_value(ctx.extraContext().get(key))
    except Exception:  # noqa: BLE001
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(*values: Any) -> str | None:
    for value in values:
        text = _text(value)
        if text:
            return text
    return None


def _https(host: str | None) -> str | None:
    if not host:
        return None
    return host if host.startswith(("https://", "http://")) else f"https://{host}"


# -- the shim -------------------------------------------------------------------------------------


LOCAL_DISK = "/local_disk0"


class DatabricksPlatform(PlatformShim):
    name = "databricks"

    def __init__(self, version_file: str = DBR_VERSION_FILE) -> None:
        self.version_file = version_file

    def detect(self) -> bool:
        if os.environ.get("IS_IN_DB_MODEL_SERVING_ENV", "").lower() in ("true", "1"):
            return True
        return runtime_version(os.environ, self.version_file)[0] is not None

    # -- facts ------------------------------------------------------------------------------

    def runtime_version(self) -> str | None:
        return runtime_version(os.environ, self.version_file)[0]

    def is_serverless(self) -> bool:
        return is_serverless_version(self.runtime_version())

    def role(self) -> str:
        """A Databricks notebook or job process is the Spark driver; Spark tasks are executors."""
        return "executor" if task_context() is not None else "driver"

    def context(self) -> PlatformContext:
        role = self.role()
        return PlatformContext(self.name, role, self._details(role))

    def _details(self, role: str) -> dict[str, str]:
        environ = os.environ
        version, origin = runtime_version(environ, self.version_file)
        found: dict[str, str | None] = dict.fromkeys(FIELDS)
        found["runtime"] = version
        if environ.get("IS_IN_DB_MODEL_SERVING_ENV", "").lower() in ("true", "1"):
            found["compute"] = "model-serving"
        elif is_serverless_version(version):
            found["compute"] = "serverless"
        elif spark_connect_mode(environ):
            found["compute"] = "shared"
        else:
            found["compute"] = "classic"
        if origin == "file":
            found["container"] = "dcs"  # Databricks Container Services: no version env var
        if role == "executor":
            self._executor_details(found, environ)
        else:
            self._driver_details(found, environ)
        name = found.get("cluster_name") or ""
        match = _JOB_CLUSTER_NAME.match(name)
        if match:  # job clusters are named job-<jobId>-run-<runId>
            found["job_id"] = found["job_id"] or match["job"]
            found["job_run_id"] = found["job_run_id"] or match["run"]
        if found["job_id"] and found["job_run_id"]:
            found["workload"] = "job"
        elif found["notebook_id"] or found["notebook_path"]:
            found["workload"] = "notebook"
        else:
            found["workload"] = "process"
        found["workspace_url"] = _https(found["workspace_url"])
        return {k: v for k, v in found.items() if v}

    @staticmethod
    def _driver_details(found: dict[str, str | None], environ: Any) -> None:
        repl = repl_context()

        def rc(name: str) -> Any:
            return getattr(repl, name, None) if repl is not None else None

        ctx = command_context(find_dbutils())
        conf = active_conf_values(_CONF)
        acl_root = _first(rc("aclPathOfAclRoot"), _ctx_call(ctx, "aclPathOfAclRoot"))
        acl_notebook = (
            acl_root.rsplit("/", 1)[-1] if acl_root and acl_root.startswith("/workspace") else None
        )
        found["workspace_url"] = _first(
            rc("workspaceUrl"),
            conf.get("workspace_url"),
            _ctx_call(ctx, "browserHostName"),
            _ctx_tag(ctx, "browserHostName"),
        )
        found["org_id"] = _first(
            rc("workspaceId"),
            _ctx_call(ctx, "workspaceId"),
            _ctx_tag(ctx, "orgId"),
            conf.get("org_id"),
        )
        found["cluster_id"] = _first(
            rc("clusterId"),
            conf.get("cluster_id"),
            _ctx_tag(ctx, "clusterId"),
            environ.get("DB_CLUSTER_ID"),
        )
        found["cluster_name"] = _first(
            conf.get("cluster_name"), _ctx_tag(ctx, "clusterName"), environ.get("DB_CLUSTER_NAME")
        )
        found["notebook_path"] = _first(
            rc("notebookPath"), _ctx_call(ctx, "notebookPath"), _ctx_extra(ctx, "notebook_path")
        )
        found["notebook_id"] = _first(rc("notebookId"), _ctx_tag(ctx, "notebookId"), acl_notebook)
        found["job_id"] = _first(rc("jobId"), _ctx_call(ctx, "jobId"), _ctx_tag(ctx, "jobId"))
        found["job_run_id"] = _first(
            rc("idInJob"), _ctx_call(ctx, "idInJob"), _ctx_tag(ctx, "idInJob")
        )
        found["user"] = _first(
            rc("userName"), rc("user"), _ctx_call(ctx, "userName"), _ctx_tag(ctx, "user")
        )
        if not found["runtime"]:
            found["runtime"] = conf.get("spark_version")

    @staticmethod
    def _executor_details(found: dict[str, str | None], environ: Any) -> None:
        try:
            handed = json.loads(environ.get(CONTEXT_ENV) or "{}")
        except ValueError:
            handed = {}
        for name in _HANDED:
            if isinstance(handed.get(name), str):
                found[name] = handed[name]
        tc = task_context()
        for name, key in _LOCAL.items():
            try:
                value = tc.getLocalProperty(key) if tc is not None else None
            except Exception:  # noqa: BLE001
                value = None
            found[name] = _first(value, found.get(name))

    # -- the shim's answers --------------------------------------------------------------------

    def default_credential_chain(self) -> list[str]:
        return list(CREDENTIAL_CHAIN)

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        from spark_aml_bridge.platforms.databricks.credentials import SOURCES

        return SOURCES

    def context_tags(self) -> dict[str, str]:
        ctx = self.context()
        tags = {"spark_aml_bridge.platform": ctx.platform, "spark_aml_bridge.role": ctx.role}
        tags.update({f"spark_aml_bridge.{k}": v for k, v in ctx.details.items() if v})
        for name, tag in _MLFLOW_TAGS.items():
            if ctx.details.get(name):
                tags[tag] = ctx.details[name]
        workload = ctx.details.get("workload")
        if workload == "job":
            tags["mlflow.source.type"] = "JOB"
            tags["mlflow.source.name"] = (
                f"jobs/{ctx.details['job_id']}/run/{ctx.details['job_run_id']}"
            )
        elif workload == "notebook":
            tags["mlflow.source.type"] = "NOTEBOOK"
            if ctx.details.get("notebook_path"):
                tags["mlflow.source.name"] = ctx.details["notebook_path"]
        return tags

    def platform_defaults(self) -> dict[str, Any]:
        # The dual-tracking spool belongs on the node's local disk, not on DBFS or /tmp.
        if os.path.isdir(LOCAL_DISK):
            return {"dual_spool_dir": os.path.join(LOCAL_DISK, "tmp", "spark-aml-bridge", "spool")}
        return {}

    def native_tracking_uri(self) -> str | None:
        """Databricks' own MLflow tracking server (what dual tracking mirrors from)."""
        return NATIVE_TRACKING_URI

    def executor_env(self) -> dict[str, str]:
        ctx = self.context()
        handed = {k: ctx.details[k] for k in _HANDED if ctx.details.get(k)}
        return {CONTEXT_ENV: json.dumps(handed, sort_keys=True)} if handed else {}

    def check_config(self, config: BridgeConfig) -> None:
        """Warn where the settings ask for something this compute cannot do."""
        explicit = config.executors and config.source("executors") not in (None, "default")
        if not explicit or self.role() == "executor":
            return
        if self.is_serverless():
            message = (
                "executors=true was requested, but this is Databricks serverless compute: it has "
                "no SparkContext to hand the connection to executors, and Python UDFs there "
                "cannot reach the internet, so Spark executors cannot log to the workspace. Runs "
                "are tracked from the driver only: collect results to the driver and log there."
            )
        elif spark_connect_mode():
            message = (
                "executors=true was requested, but this Databricks compute uses standard (shared) "
                "access mode: the driver has no SparkContext to hand the connection to executors. "
                "Give executors their own identity instead (cluster environment variables from "
                "`spark-aml-bridge init-script databricks`, or a Unity Catalog service credential "
                "with databricks_service_credential=), or collect results and log them on the "
                "driver (or from a foreachBatch function, which runs on the driver)."
            )
        else:
            return
        _log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
