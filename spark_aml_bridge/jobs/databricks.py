"""``spark_aml_bridge.jobs.databricks``: the documented path of Databricks job submission (thin
re-export of ``platforms/databricks/jobs.py``)."""

from __future__ import annotations

from spark_aml_bridge.platforms.databricks.jobs import (
    TASK_KINDS,
    SubmittedRun,
    build_submit_task,
    submit_databricks_run,
)

__all__ = ["TASK_KINDS", "SubmittedRun", "build_submit_task", "submit_databricks_run"]
