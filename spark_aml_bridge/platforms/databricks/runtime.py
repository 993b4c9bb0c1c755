"""Facts of the Databricks runtime this process may run in, read cheaply (never starts Spark):
its version, its ``dbutils``, the notebook command context and the REPL context. The shim and the
credential sources both read them here."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

DBR_VERSION_FILE = "/databricks/DBR_VERSION"


def runtime_version(
    environ: dict[str, str] | os._Environ[str] | None = None,
    version_file: str = DBR_VERSION_FILE,
) -> tuple[str | None, str | None]:
    """(version, where it came from: "env" | "file"), as MLflow derives it; (None, None) if none."""
    environ = os.environ if environ is None else environ
    env_version = environ.get("DATABRICKS_ENV_VERSION")
    if env_version:
        version = f"client.{env_version}"
        if environ.get("DATABRICKS_ACCELERATOR"):
            version += "-gpu"
        return version, "env"
    if environ.get("DATABRICKS_RUNTIME_VERSION"):
        return environ["DATABRICKS_RUNTIME_VERSION"], "env"
    try:
        with open(version_file, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError:
        return None, None
    return (text or "unknown"), "file"


def is_serverless_version(version: str | None) -> bool:
    return bool(version) and str(version).startswith("client.")


def spark_connect_mode(environ: Any = None) -> bool:
    """The Python REPL talks to Spark through Spark Connect (standard/shared access, serverless)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("SPARK_CONNECT_MODE_ENABLED") or environ.get("SPARK_REMOTE"))


def find_dbutils() -> Any | None:
    """The runtime's ``dbutils``: the notebook's IPython namespace, else ``databricks.sdk.runtime``.

    The SDK module is only asked on a runtime (``dbruntime`` importable): elsewhere it would fall
    back to a remote implementation that needs its own Databricks credentials.
    """
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        try:
            shell = ipython.get_ipython()
            found = shell.ns_table["user_global"].get("dbutils") if shell is not None else None
            if found is not None:
                return found
        except Exception:  # noqa: BLE001 - not a notebook shell
            pass
    try:
        if importlib.util.find_spec("dbruntime") is None:
            return None
        from databricks.sdk import runtime

        if getattr(runtime, "is_local_implementation", True):
            return None
        return getattr(runtime, "dbutils", None)
    except Exception:  # noqa: BLE001 - no runtime namespace here
        return None


def option_value(value: Any) -> Any:
    """Unwrap a Scala ``Option`` (py4j) or pass a plain value through; empty -> None."""
    if value is None:
        return None
    is_defined = getattr(value, "isDefined", None)
    if callable(is_defined):
        return value.get() if is_defined() else None
    return value


def command_context(dbutils: Any) -> Any | None:
    """``dbutils.notebook.entry_point.getDbutils().notebook().getContext()``, or None."""
    if dbutils is None:
        return None
    try:
        return dbutils.notebook.entry_point.getDbutils().notebook().getContext()
    except Exception:  # noqa: BLE001 - serverless and plain processes have no command context
        return None


def repl_context() -> Any | None:
    """The runtime's REPL context object (``dbruntime``), or None off Databricks."""
    try:
        from dbruntime.databricks_repl_context import get_context

        return get_context()
    except Exception:  # noqa: BLE001 - ImportError off the runtime
        return None
