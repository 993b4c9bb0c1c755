"""After connect() on the driver, real Spark Python workers track to the workspace."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid

import mlflow
from mlflow.tracking import MlflowClient

import spark_aml_bridge

JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")


def _log_one_run_per_partition(experiment_id: str):
    def log(batches):
        import mlflow
        import pandas as pd

        for frame in batches:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_metric("rows", len(frame))
                mlflow.log_param("first_id", int(frame["id"].iloc[0]))
            yield pd.DataFrame({"run_id": [run.info.run_id], "uri": [mlflow.get_tracking_uri()]})

    return log


def test_map_in_pandas_tasks_log_runs_to_the_workspace(use_emulator, spark):
    bridge = spark_aml_bridge.connect()
    assert bridge.executors_linked
    experiment_id = mlflow.set_experiment(f"executors-{uuid.uuid4().hex[:8]}").experiment_id
    frame = spark.range(0, 100, numPartitions=2)
    rows = frame.mapInPandas(
        _log_one_run_per_partition(experiment_id), "run_id string, uri string"
    ).collect()

    assert len(rows) == 2 and {r.uri for r in rows} == {bridge.tracking_uri}
    client = MlflowClient()
    runs = [client.get_run(r.run_id) for r in rows]
    assert sorted(r.data.metrics["rows"] for r in runs) == [50, 50]
    assert {r.data.tags["spark_aml_bridge.role"] for r in runs} == {"executor"}

    # No secret and no token in Spark conf or in what the Spark UI shows.
    secret = use_emulator.info["client_secret"]
    conf_text = json.dumps(spark.sparkContext.getConf().getAll())
    assert secret not in conf_text and not JWT.search(conf_text)
    app_id = spark.sparkContext.applicationId
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app_id}/environment"
    with urllib.request.urlopen(url, timeout=30) as response:  # the local Spark UI
        ui_text = response.read().decode()
    assert "spark.app.name" in ui_text
    assert secret not in ui_text and not JWT.search(ui_text)


def test_disconnect_unlinks_executors(use_emulator, spark):
    spark_aml_bridge.connect()
    assert "MLFLOW_TRACKING_URI" in spark.sparkContext.environment
    spark_aml_bridge.disconnect()
    assert "MLFLOW_TRACKING_URI" not in spark.sparkContext.environment
    assert not any(k.startswith("_SPARK_AML_BRIDGE") for k in spark.sparkContext.environment)
