"""Foundation benchmarks, side by side in one run against one emulator.

1. 2,000 ``log_metric`` calls through the bridge vs the same calls with a static
   ``MLFLOW_TRACKING_TOKEN`` (stock MLflow REST store, https URL) — target ratio <= 1.05.
2. ``connect()`` wall time after imports with a warm token — target <= 50 ms.

Usage: python benchmarks/bench_foundation.py [--calls 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"


def _log_block(client, run_id: str, count: int, offset: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        client.log_metric(run_id, "m", float(i), step=offset + i)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import mlflow
    from mlflow.tracking import MlflowClient

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    with tempfile.TemporaryDirectory() as state, start_emulator(state) as emulator:
        info = emulator.info
        os.environ.update(info["env"])

        # -- connect() timings ------------------------------------------------------------
        started = time.perf_counter()
        bridge = spark_aml_bridge.connect()
        cold_connect = time.perf_counter() - started
        warm = []
        for _ in range(20):
            spark_aml_bridge.disconnect()
            started = time.perf_counter()
            bridge = spark_aml_bridge.connect()
            warm.append(time.perf_counter() - started)

        # -- log_metric: bridge vs static token, interleaved blocks -----------------------
        bridge_client = MlflowClient(tracking_uri=bridge.tracking_uri)
        experiment_id = mlflow.set_experiment("bench-log-metric").experiment_id
        bridge_run = bridge_client.create_run(experiment_id).info.run_id

        static_token = bridge.session.tokens.token()  # same token lifetime: 1 h by default
        os.environ["MLFLOW_TRACKING_TOKEN"] = static_token
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = info["ca_bundle"]
        static_client = MlflowClient(tracking_uri=info["workspace_url"])
        static_run = static_client.create_run(experiment_id).info.run_id

        block = args.calls // args.rounds
        _log_block(bridge_client, bridge_run, 50, 10**6)  # warm both connection pools
        _log_block(static_client, static_run, 50, 10**6)
        bridge_times, static_times = [], []
        for r in range(args.rounds):
            order = [
                (bridge_client, bridge_run, bridge_times),
                (static_client, static_run, static_times),
            ]
            if r % 2:
                order.reverse()
            for client, run_id, sink in order:
                sink.append(_log_block(client, run_id, block, r * block))

        bridge_total, static_total = sum(bridge_times), sum(static_times)
        result = {
            "log_metric_calls_each": block * args.rounds,
            "bridge_ms_per_call": round(bridge_total / (block * args.rounds) * 1000, 3),
            "static_token_ms_per_call": round(static_total / (block * args.rounds) * 1000, 3),
            "ratio_bridge_over_static": round(bridge_total / static_total, 3),
            "ratio_median_block": round(
                statistics.median(bridge_times) / statistics.median(static_times), 3
            ),
            "connect_cold_ms": round(cold_connect * 1000, 1),
            "connect_warm_median_ms": round(statistics.median(warm) * 1000, 2),
            "connect_warm_max_ms": round(max(warm) * 1000, 2),
            "token_requests_by_bridge": bridge.session.tokens.requests,
            "mlflow": mlflow.__version__,
        }
        spark_aml_bridge.disconnect()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
