"""Double of ``dbruntime.databricks_repl_context``: the REPL context MLflow reads first."""

from __future__ import annotations

from typing import Any


def get_context() -> Any:
    from spark_aml_bridge.emulator.databricks.runtime import active_double
    from spark_aml_bridge.spark_state import task_context

    double = active_double()
    if double is None or task_context() is not None:
        return None
    return double.repl_context
