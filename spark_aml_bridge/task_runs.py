"""``task_run()``: runs logged from Spark tasks, linked to the driver's active run.

    with mlflow.start_run():                      # on the driver
        def train(rows):                          # in Spark tasks
            with spark_aml_bridge.task_run():     # a child run of the driver's run
                mlflow.log_metric("loss", ...)
        rdd.mapPartitions(train).collect()

No ids are passed by hand: a task asks its driver (through the link ``connect()`` set up) which
run is active there. ``task_run(child=False)`` logs into the driver's run itself and leaves it
running. A run the task already has (e.g. one a Hyperopt integration started) takes precedence
over the driver's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from spark_aml_bridge.errors import ConfigError
from spark_aml_bridge.spark_state import task_context

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nested runs (mlflow/utils/mlflow_tags.py)
TASK_TAG = "spark_aml_bridge.spark_task"


def _driver_run(mlflow: Any) -> tuple[str, str]:
    """(run id, experiment id) of the run this task's logging should attach to."""
    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id, active.info.experiment_id
    if task_context() is None:
        raise ConfigError(
            "spark_aml_bridge.task_run() found no active MLflow run on this driver",
            "start one around the Spark action: with mlflow.start_run(): ...collect()",
        )
    from spark_aml_bridge.credentials.driver_link import require_driver_link

    answer = require_driver_link("spark_aml_bridge.task_run()").active_run()
    if not answer.get("run_id"):
        raise ConfigError(
            "spark_aml_bridge.task_run(): the Spark driver has no active MLflow run",
            "start one on the driver around the Spark action: "
            "with mlflow.start_run(): df.mapInPandas(...).collect()",
        )
    return str(answer["run_id"]), str(answer["experiment_id"])


@contextlib.contextmanager
def task_run(
    *, child: bool = True, run_name: str | None = None, tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """A run for this Spark task's MLflow logging, linked to the driver's active run.

    `child=True` (default): a new run under the driver's active run (``mlflow.parentRunId``),
    ended when the block ends (FAILED if it raised). `child=False`: the driver's run itself,
    left running for the driver to end. Works on the driver too (child of its active run).
    """
    from spark_aml_bridge.bridge import require_mlflow

    mlflow = require_mlflow()
    parent_id, experiment_id = _driver_run(mlflow)
    own_active = mlflow.active_run() is not None
    task = task_context()
    run_tags = dict(tags or {})
    if task is not None:
        run_tags.setdefault(
            TASK_TAG,
            f"stage {task.stageId()} partition {task.partitionId()} attempt {task.attemptNumber()}",
        )
    if not child:
        if own_active:
            yield mlflow.active_run()
            return
        run = mlflow.start_run(run_id=parent_id)
        try:
            if run_tags:
                mlflow.set_tags({k: v for k, v in run_tags.items() if k != TASK_TAG})
            yield run
        finally:
            # Pop it from this worker's stack without ending it: the driver owns its status.
            mlflow.end_run(status="RUNNING")
        return
    run_tags[PARENT_TAG] = parent_id
    run = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=run_tags, nested=own_active
    )
    status = "FINISHED"
    try:
        yield run
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status=status)
