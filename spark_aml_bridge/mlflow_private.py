"""The MLflow private APIs this package reaches, in one place, each use explained.

Each has a public fallback, so a future MLflow without it degrades instead of breaking.
"""

from __future__ import annotations

from typing import Any


def latest_active_run() -> Any | None:
    """The driver's most recently started active run across *all* threads.

    ``mlflow.active_run()`` only sees the calling thread, but executors ask from the driver
    service's thread while the user's run is active on the notebook's thread (and Hyperopt's
    SparkTrials submits trials from threads of its own). MLflow keeps every thread's run stack
    and reads them the same way for runs started in other threads
    (``mlflow.tracking.fluent._get_latest_active_run``, MLflow 2.x and 3.x).
    """
    import mlflow

    try:
        from mlflow.tracking.fluent import _get_latest_active_run
    except ImportError:  # not in this MLflow: the calling thread's run is all we can see
        return mlflow.active_run()
    return _get_latest_active_run()
