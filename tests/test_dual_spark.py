"""Two processes logging in dual mode at once: the Spark driver and a Spark task's Python worker."""

from __future__ import annotations

import threading
import time
import uuid

import mlflow
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.cli import main
from spark_aml_bridge.dual.api import status
from spark_aml_bridge.dual.uri import MIRROR_RUN_TAG


def _child_runs(experiment_id: str, parent_id: str):
    def log(batches):
        import mlflow
        import pandas as pd

        for frame in batches:
            part = int(frame["id"].iloc[0])
            tags = {"mlflow.parentRunId": parent_id}
            with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
                mlflow.log_param("first_id", part)
                for step in range(30):
                    mlflow.log_metric("rows", len(frame) + step, step=step)
            yield pd.DataFrame({"run_id": [run.info.run_id], "uri": [mlflow.get_tracking_uri()]})

    return log


def test_driver_and_spark_task_log_concurrently(dual_env, dual_primary, spark, capsys):
    # Executors reach the primary as the driver does (on Databricks the runtime provides this).
    extra = {k: v for k, v in dual_primary[1].items()}
    previous = {k: spark.sparkContext.environment.get(k) for k in extra}
    spark.sparkContext.environment.update(extra)
    try:
        bridge = spark_aml_bridge.connect()
        assert bridge.executors_linked
        assert spark.sparkContext.environment["MLFLOW_TRACKING_URI"] == bridge.tracking_uri
        name = f"/Users/dual@example.com/tests/spark-{uuid.uuid4().hex[:8]}"
        experiment_id = mlflow.set_experiment(name).experiment_id
        with mlflow.start_run(run_name="driver") as parent:
            stop = threading.Event()

            def driver_logging():
                client, step = MlflowClient(), 0
                while not stop.is_set():
                    client.log_metric(parent.info.run_id, "driver", float(step), step=step)
                    step += 1

            logger = threading.Thread(target=driver_logging)
            logger.start()
            try:
                frame = spark.range(0, 100, numPartitions=2)
                rows = frame.mapInPandas(
                    _child_runs(experiment_id, parent.info.run_id), "run_id string, uri string"
                ).collect()
            finally:
                stop.set()
                logger.join()
        assert len(rows) == 2 and {r.uri for r in rows} == {bridge.tracking_uri}

        assert bridge.dual.flush(120)
        spool_dir = dual_env["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"]
        deadline = time.monotonic() + 120
        while status(spool_dir)["totals"]["pending_ops"] and time.monotonic() < deadline:
            time.sleep(0.5)  # the Python workers' own mirror workers drain their spools
        info = status(spool_dir)
        assert info["totals"]["pending_ops"] == 0 and info["totals"]["dead_letters"] == 0, info
        assert len(info["spools"]) >= 2  # the driver's and at least one Python worker's

        assert main(["mirror", "verify", "--experiment-id", experiment_id]) == 0, (
            capsys.readouterr()
        )
        primary = MlflowClient(bridge.dual.primary_uri)
        mirror = MlflowClient(bridge.dual.mirror_uri)
        mirror_parent = primary.get_run(parent.info.run_id).data.tags[MIRROR_RUN_TAG]
        for row in rows:
            child = mirror.get_run(primary.get_run(row.run_id).data.tags[MIRROR_RUN_TAG])
            assert child.data.tags["mlflow.parentRunId"] == mirror_parent
            assert child.data.tags["spark_aml_bridge.role"] == "executor"
    finally:
        for key, value in previous.items():
            if value is None:
                spark.sparkContext.environment.pop(key, None)
            else:
                spark.sparkContext.environment[key] = value
