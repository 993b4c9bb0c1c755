"""spark_aml_bridge: an Azure ML workspace as the MLflow tracking server for Spark platforms.

    import spark_aml_bridge
    bridge = spark_aml_bridge.connect(workspace="/subscriptions/.../workspaces/<ws>")

Importing this package is cheap: MLflow, Spark and Azure SDKs load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spark_aml_bridge._version import __version__

if TYPE_CHECKING:
    from spark_aml_bridge.bridge import Bridge

__all__ = ["Bridge", "__version__", "connect", "current", "disconnect", "task_run"]


def connect(workspace: str | None = None, **kwargs: Any) -> Bridge:
    """Point MLflow at an Azure ML workspace; see ``spark_aml_bridge.bridge.connect``."""
    from spark_aml_bridge.bridge import connect as _connect

    return _connect(workspace, **kwargs)


def disconnect() -> None:
    """Undo ``connect()``: MLflow's URIs, env and executors as they were before."""
    from spark_aml_bridge.bridge import disconnect as _disconnect

    _disconnect()


def current() -> Bridge | None:
    """The live bridge of this process, or None."""
    from spark_aml_bridge.bridge import current as _current

    return _current()


def task_run(**kwargs: Any) -> Any:
    """A run for a Spark task, linked to the driver's active run (see ``task_runs``)."""
    from spark_aml_bridge.task_runs import task_run as _task_run

    return _task_run(**kwargs)


def __getattr__(name: str) -> Any:
    if name == "Bridge":
        from spark_aml_bridge.bridge import Bridge

        return Bridge
    raise AttributeError(name)
