"""Double of the runtime's ``dbruntime`` package: the user namespace ``databricks.sdk.runtime``
reads ``dbutils`` from. Only on the driver: in Spark tasks it raises, as dbutils is not there."""

from __future__ import annotations

from typing import Any


class UserNamespaceInitializer:
    _instance: UserNamespaceInitializer | None = None

    @classmethod
    def getOrCreate(cls) -> UserNamespaceInitializer:  # noqa: N802 - the runtime's name
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def get_namespace_globals(self) -> dict[str, Any]:
        from spark_aml_bridge.emulator.databricks.runtime import active_double
        from spark_aml_bridge.spark_state import task_context

        if task_context() is not None:
            raise RuntimeError("dbutils is not available in Spark executors")
        double = active_double()
        return {"dbutils": double.dbutils} if double is not None else {}
