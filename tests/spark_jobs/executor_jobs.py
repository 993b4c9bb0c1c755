"""A Spark driver in its own process (a second SparkSession cannot live in the pytest process):
connects the bridge, runs one scenario on real executors, prints one JSON line of results.

    python executor_jobs.py SCENARIO MASTER REUSE OUT_DIR

Scenarios: `kinds` (every kind of Spark Python code logs through task_run), `scale`
(env SCALE_TASKS tasks, default 64, x 100 metrics over ~3 s each), or both in one application
(`kinds+scale`); each scenario's results under its name. The workspace comes from the
emulator env the test exports.
"""

import json
import logging
import os
import sys
import time
import uuid

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


def _spark(master: str, reuse: bool, out_dir: str):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("spark-aml-bridge-executor-jobs")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.port", "0")
        .config("spark.python.worker.reuse", "true" if reuse else "false")
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", os.path.join(out_dir, "events"))
        # Plain text, so the test can search it (Spark 4 compresses event logs by default).
        .config("spark.eventLog.compress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.executor.memory", "700m")
        .getOrCreate()
    )


def _log_in_child(kind: str, value: float) -> str:
    import mlflow

    import spark_aml_bridge

    with spark_aml_bridge.task_run(tags={"kind": kind}) as run:
        mlflow.log_metric("value", value)
        mlflow.log_param("kind", kind)
        return run.info.run_id


def kinds(spark, results: dict) -> None:
    import mlflow
    import pandas as pd
    from pyspark.sql.functions import col, pandas_udf, udf

    def rdd_function(rows):
        yield _log_in_child("rdd", float(sum(1 for _ in rows)))

    def map_in_pandas(batches):
        for frame in batches:
            yield pd.DataFrame({"run_id": [_log_in_child("mapInPandas", float(len(frame)))]})

    def apply_in_pandas(frame):
        return pd.DataFrame({"run_id": [_log_in_child("applyInPandas", float(len(frame)))]})

    @pandas_udf("string")
    def pandas_function(ids: pd.Series) -> pd.Series:
        return pd.Series([_log_in_child("pandas_udf", float(v)) for v in ids])

    @udf("string")
    def python_function(value):
        return _log_in_child("python_udf", float(value))

    def for_each_partition(rows):
        _log_in_child("foreachPartition", float(sum(1 for _ in rows)))

    frame = spark.range(0, 4, numPartitions=2)
    started = time.time()
    with mlflow.start_run(run_name="kinds") as parent:
        results["parent_run_id"] = parent.info.run_id
        ids = {
            "rdd": spark.sparkContext.parallelize(range(4), 2)
            .mapPartitions(rdd_function)
            .collect(),
            "mapInPandas": [
                r.run_id for r in frame.mapInPandas(map_in_pandas, "run_id string").collect()
            ],
            "applyInPandas": [
                r.run_id
                for r in frame.groupBy((col("id") % 2).alias("g"))
                .applyInPandas(apply_in_pandas, "run_id string")
                .collect()
            ],
            "pandas_udf": [r.r for r in frame.select(pandas_function("id").alias("r")).collect()],
            "python_udf": [r.r for r in frame.select(python_function("id").alias("r")).collect()],
        }
        spark.sparkContext.parallelize(range(4), 2).foreachPartition(for_each_partition)
        results["ids"] = ids
    results["job_seconds"] = time.time() - started


def scale(spark, results: dict) -> None:
    import mlflow

    tasks, metrics, seconds = int(os.environ.get("SCALE_TASKS", "64")), 100, 3.0

    def work(index, rows):
        import time

        import mlflow

        import spark_aml_bridge

        with spark_aml_bridge.task_run(tags={"task": str(index)}) as run:
            # Paced: point k is logged at k * 30 ms (or as soon as the previous one returned).
            started, pause = time.monotonic(), seconds / metrics
            for step in range(metrics):
                mlflow.log_metric("m", float(index * 1000 + step), step=step)
                time.sleep(max(0.0, started + (step + 1) * pause - time.monotonic()))
        yield (index, run.info.run_id, os.getpid(), os.getppid())

    with mlflow.start_run(run_name="scale") as parent:
        results["parent_run_id"] = parent.info.run_id
        started = time.time()
        rows = spark.sparkContext.parallelize(range(tasks), tasks).mapPartitionsWithIndex(work)
        rows = rows.collect()
        results["job_seconds"] = time.time() - started
    results["tasks"] = [list(r) for r in rows]
    results["python_workers"] = len({r[2] for r in rows})
    # Each executor JVM forks its Python workers from one daemon: distinct parents = executors.
    results["python_daemons"] = len({r[3] for r in rows})


def main() -> None:
    scenario, master, reuse, out_dir = sys.argv[1:5]
    logging.basicConfig(
        filename=os.path.join(out_dir, "driver-debug.log"),
        level=logging.DEBUG,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    os.makedirs(os.path.join(out_dir, "events"), exist_ok=True)
    spark = _spark(master, reuse == "reuse", out_dir)
    import mlflow

    import spark_aml_bridge

    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(f"executors-{scenario}-{uuid.uuid4().hex[:8]}")
    results: dict = {"scenario": scenario, "master": master, "reuse": reuse}
    started = time.time()
    for part in scenario.split("+"):
        {"kinds": kinds, "scale": scale}[part](spark, results.setdefault(part, {}))
    results["seconds"] = time.time() - started
    results["service"] = bridge._executors.stats()
    results["secret"] = json.loads(bridge._executors.service.key_material())["secret"]
    sc = spark.sparkContext
    results["conf"] = sc.getConf().getAll()
    import urllib.request

    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/environment"
    with urllib.request.urlopen(url, timeout=30) as response:
        results["ui_environment"] = response.read().decode()
    spark_aml_bridge.disconnect()
    spark.stop()
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
