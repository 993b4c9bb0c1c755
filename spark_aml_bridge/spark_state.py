"""Read Spark's state without ever starting Spark: the one place that asks PySpark.

Every answer is "nothing" when PySpark was never imported by this process (a plain Python
process must not pay for importing it), when no session is active, or when Spark is broken,
remote (Spark Connect has no SparkContext) or dying: callers treat Spark state as a hint.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any


def task_context() -> Any | None:
    """The Spark ``TaskContext`` when this code runs inside a Spark task (an executor)."""
    if "pyspark" not in sys.modules:
        return None
    try:
        from pyspark import TaskContext

        return TaskContext.get()
    except Exception:  # noqa: BLE001 - a broken Spark install must not break the caller
        return None


def in_spark_task() -> bool:
    """True inside a Spark task (a Python worker running a UDF or mapPartitions)."""
    return task_context() is not None


def active_session() -> Any | None:
    """The already active ``SparkSession``, or None; never creates one."""
    if "pyspark" not in sys.modules:
        return None
    try:
        from pyspark.sql import SparkSession

        return SparkSession.getActiveSession()
    except Exception:  # noqa: BLE001 - Spark Connect client missing, dying JVM
        return None


def active_spark_context() -> Any | None:
    """The active session's ``SparkContext``, or None (no session, or Spark Connect)."""
    session = active_session()
    if session is None:
        return None
    try:
        return session.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return None


def spark_role() -> str:
    """'executor' inside a Spark task, 'driver' when a Spark session is active, else 'process'."""
    if task_context() is not None:
        return "executor"
    return "driver" if active_session() is not None else "process"


def session_conf(session: Any, keys: Iterable[str] = ()) -> dict[str, str]:
    """`session`'s Spark conf: its SparkContext conf plus the runtime values of `keys`."""
    conf: dict[str, str] = {}
    try:
        conf.update(session.sparkContext.getConf().getAll())
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        pass
    for key in keys:
        try:
            value = session.conf.get(key, None)
        except Exception:  # noqa: BLE001 - serverless compute refuses most conf reads
            value = None
        if value is not None:
            conf[key] = value
    return conf


def active_conf_values(keys: Mapping[str, str]) -> dict[str, str]:
    """{name: value} of the runtime conf `keys` ({name: conf key}) of the active session."""
    session = active_session()
    if session is None:
        return {}
    found: dict[str, str] = {}
    for name, key in keys.items():
        try:
            value = session.conf.get(key, None)
        except Exception:  # noqa: BLE001 - serverless compute refuses most conf reads
            value = None
        if value:
            found[name] = str(value)
    return found


def active_conf_with_prefix(prefix: str) -> dict[str, str]:
    """Entries of the active session's SparkContext conf whose keys start with `prefix`."""
    spark_context = active_spark_context()
    if spark_context is None:
        return {}
    try:
        pairs = spark_context.getConf().getAll()
    except Exception:  # noqa: BLE001 - a dying JVM: no conf to read
        return {}
    return {key: value for key, value in pairs if key.startswith(prefix)}
