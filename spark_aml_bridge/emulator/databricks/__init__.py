"""Databricks doubles: a runtime double (env, Spark conf, ``dbutils``, service credentials) that
makes a process look like a Databricks driver, and a workspace double (MLflow REST with PAT auth,
the Jobs API) that the emulator runs as its own process. Cheap to import."""

from __future__ import annotations

from typing import Any

__all__ = ["DatabricksRuntimeDouble", "activate_from_env", "write_ipython_startup"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spark_aml_bridge.emulator.databricks import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
