"""Executors at scale, side by side in one run against one emulator and one Spark application.

64 Spark tasks x 100 ``log_metric`` calls each, on separate executors (``local-cluster[2,1,1024]``
by default):

* bridge: ``connect()`` on the driver; tasks get tokens from the driver's service;
* static: the same tasks with stock MLflow on the workspace's https URL and a static
  ``MLFLOW_TRACKING_TOKEN`` in the executors' environment (what users do without the bridge);
* driver: the same 6,400 points logged from the driver with ``log_batch``.

Reports throughput (metrics/s over the job's wall time), p95 per-call latency inside tasks, and
token requests (the driver service's, and Azure AD's as the emulator counts them). Targets:
bridge/static throughput >= 0.95; token requests <= executors' Python processes x lifetimes.
Rounds alternate (bridge, static, bridge, static, ...) so load on the machine hits both alike.

Usage: python benchmarks/bench_executors.py [--rounds 2] [--master local-cluster[2,1,1024]]
       [--token-lifetime 900]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # shared helpers
from plain_access import emulator_token  # noqa: E402

TASKS, METRICS = 64, 100
STATIC_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_SERVER_CERT_PATH")


def _task(experiment_id: str):
    def work(index, rows):
        import time

        import mlflow

        latencies = []
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"task-{index}"):
            for step in range(METRICS):
                started = time.perf_counter()
                mlflow.log_metric("m", float(step), step=step)
                latencies.append(time.perf_counter() - started)
        yield latencies

    return work


def _job(spark, experiment_id: str) -> tuple[float, list[float]]:
    started = time.perf_counter()
    rdd = spark.sparkContext.parallelize(range(TASKS), TASKS)
    per_task = rdd.mapPartitionsWithIndex(_task(experiment_id)).collect()
    return time.perf_counter() - started, [x for task in per_task for x in task]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--master", default="local-cluster[2,1,1024]")
    # Long enough for a static token to outlive a round (the static side cannot refresh).
    parser.add_argument("--token-lifetime", type=int, default=900)
    args = parser.parse_args()

    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from pyspark.sql import SparkSession

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    with (
        tempfile.TemporaryDirectory() as state,
        start_emulator(state, token_lifetime=args.token_lifetime) as emulator,
    ):
        info = emulator.info
        os.environ.update(info["env"])
        spark = (
            SparkSession.builder.master(args.master)
            .appName("bench-executors")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.executor.memory", "700m")
            .getOrCreate()
        )
        sc = spark.sparkContext
        results: dict[str, list] = {"bridge": [], "static": []}
        bridge_seconds = 0.0
        service_requests = 0
        python_processes = 0
        emulator.reset_stats()
        for _ in range(args.rounds):
            # -- through the bridge ----------------------------------------------------------
            bridge = spark_aml_bridge.connect()
            experiment_id = mlflow.set_experiment(
                f"bench-exec-{uuid.uuid4().hex[:6]}"
            ).experiment_id
            seconds, latencies = _job(spark, experiment_id)
            stats = bridge._executors.stats()
            service_requests += stats["token_requests"]
            python_processes = max(python_processes, stats["token_clients"])
            bridge_seconds += seconds
            results["bridge"].append((seconds, latencies))
            spark_aml_bridge.disconnect()
            # -- stock MLflow, static token in the executors' environment --------------------
            aad_before_static = emulator.stats()["token_requests"]["total"]
            static = {
                "MLFLOW_TRACKING_URI": info["workspace_url"],
                "MLFLOW_TRACKING_TOKEN": emulator_token(info),
                "MLFLOW_TRACKING_SERVER_CERT_PATH": info["ca_bundle"],
            }
            sc.environment.update(static)
            client = MlflowClient(tracking_uri=info["workspace_url"])
            os.environ.update(static)
            experiment_id = client.create_experiment(f"bench-static-{uuid.uuid4().hex[:6]}")
            seconds, latencies = _job(spark, experiment_id)
            results["static"].append((seconds, latencies))
            for name in STATIC_ENV:
                sc.environment.pop(name, None)
                os.environ.pop(name, None)
            static_aad = emulator.stats()["token_requests"]["total"] - aad_before_static
        aad_total = emulator.stats()["token_requests"]["total"] - static_aad * args.rounds

        # -- the same points from the driver with log_batch ---------------------------------
        spark_aml_bridge.connect()
        client = MlflowClient()
        experiment_id = mlflow.set_experiment(f"bench-driver-{uuid.uuid4().hex[:6]}").experiment_id
        started = time.perf_counter()
        now = int(time.time() * 1000)
        for _ in range(TASKS):
            run_id = client.create_run(experiment_id).info.run_id
            points = [Metric("m", float(s), now, s) for s in range(METRICS)]
            client.log_batch(run_id, metrics=points)
            client.set_terminated(run_id)
        driver_seconds = time.perf_counter() - started
        spark_aml_bridge.disconnect()
        spark.stop()

    points = TASKS * METRICS

    def summary(rounds: list) -> dict:
        throughput = [points / seconds for seconds, _ in rounds]
        latencies = [x for _, values in rounds for x in values]
        return {
            "metrics_per_s_per_round": [round(t, 1) for t in throughput],
            "metrics_per_s": round(statistics.median(throughput), 1),
            "p95_ms": round(_p95(latencies) * 1000, 2),
            "median_ms": round(statistics.median(latencies) * 1000, 2),
        }

    bridge, static = summary(results["bridge"]), summary(results["static"])
    lifetimes = bridge_seconds / args.token_lifetime + args.rounds  # each round starts afresh
    report = {
        "master": args.master,
        "tasks": TASKS,
        "metrics_per_task": METRICS,
        "token_lifetime_s": args.token_lifetime,
        "bridge": bridge,
        "static_token": static,
        "driver_log_batch": {"metrics_per_s": round(points / driver_seconds, 1)},
        "ratio_bridge_over_static_throughput": round(
            bridge["metrics_per_s"] / static["metrics_per_s"], 3
        ),
        "token_requests": {
            "driver_service": service_requests,
            "azure_ad_bridge_rounds": aad_total,
            "python_processes": python_processes,
            "bound_processes_x_lifetimes": round(python_processes * lifetimes, 1),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
