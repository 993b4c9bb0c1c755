"""Durable writes vs synchronous writes vs MLflow's async logging, side by side in one run.

Against one emulator (5 s tokens), the training thread's time per ``log_metric`` and per
``log_batch`` of 1,000 metrics, for:
- sync: the workspace store, each write sent before the call returns (durable_writes=false);
- durable: committed to the spool, sent by the worker (durable_writes=true);
- async: MLflow's own async logging (``synchronous=False``, in-memory queue) on the sync store;
healthy, and under a fault schedule (a 429 storm with Retry-After: 1, lost responses, a short
outage, a token revocation). Also: the durable worker's drain rate and the spool's peak size.

Usage: python benchmarks/bench_durable.py [--metrics 500] [--batches 10] [--fault-seconds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def _timed(call, samples: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - counted: a call raised into user code
        errors.append(type(exc).__name__)
    samples.append(time.perf_counter() - started)


def _faults(emulator, seconds: float) -> threading.Thread:
    """A compressed fault schedule over `seconds`: storm, lost responses, revocation, outage."""

    def run() -> None:
        step = seconds / 4
        emulator.inject_faults(status=429, count=10, retry_after=1)
        time.sleep(step)
        emulator.inject_faults(status=503, count=5, path_contains="log-batch", when="after")
        time.sleep(step)
        emulator.revoke_tokens()
        time.sleep(step)
        emulator.outage(min(step, 5.0))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics", type=int, default=500)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--fault-seconds", type=float, default=12.0)
    args = parser.parse_args()

    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    results: dict[str, dict] = {}
    with (
        tempfile.TemporaryDirectory() as state,
        start_emulator(state, token_lifetime=5, extra_args=["--no-databricks"]) as emulator,
    ):
        os.environ.update(emulator.info["env"])
        os.environ["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"] = os.path.join(state, "spool")
        experiment = f"bench-durable-{int(time.time())}"

        def session(mode: str) -> tuple[MlflowClient, str]:
            spark_aml_bridge.disconnect()
            spark_aml_bridge.connect(durable_writes=(mode == "durable"))
            client = MlflowClient()
            experiment_id = mlflow.set_experiment(experiment).experiment_id
            return client, client.create_run(experiment_id).info.run_id

        def log_metrics(client, run_id, mode, count, errors, pace=0.0) -> list[float]:
            samples: list[float] = []
            sync = mode != "async"
            for i in range(count):
                _timed(
                    lambda i=i: client.log_metric(run_id, "m", float(i), step=i, synchronous=sync),
                    samples,
                    errors,
                )
                if pace:
                    time.sleep(pace)
            return samples

        def log_batches(client, run_id, mode, count, errors) -> list[float]:
            samples: list[float] = []
            sync = mode != "async"
            now = int(time.time() * 1000)
            for b in range(count):
                metrics = [Metric("b", float(i), now, b * 1000 + i) for i in range(1000)]
                _timed(
                    lambda metrics=metrics: client.log_batch(
                        run_id, metrics=metrics, synchronous=sync
                    ),
                    samples,
                    errors,
                )
            return samples

        def finish(client, mode) -> float:
            started = time.perf_counter()
            if mode == "async":
                mlflow.flush_async_logging()
            else:
                spark_aml_bridge.current().flush(300)
            return time.perf_counter() - started

        for mode in ("sync", "durable", "async"):
            client, run_id = session(mode)
            errors: list[str] = []
            per_metric = log_metrics(client, run_id, mode, args.metrics, errors)
            per_batch = log_batches(client, run_id, mode, args.batches, errors)
            settle = finish(client, mode)
            points = args.metrics + 1000 * args.batches
            entry = {
                "log_metric": _summary(per_metric),
                "log_batch_1000": _summary(per_batch),
                "settle_seconds": round(settle, 2),
                "raised": len(errors),
            }
            if mode == "durable":
                store = client._tracking_client.store
                status = store.durable_status()
                entry["drain_points_per_s"] = round(points / max(settle, 1e-6))
                entry["spool_peak_bytes"] = status.get("peak_size_bytes")
            results[f"healthy/{mode}"] = entry

        # Under the fault schedule: one metric every 20 ms for --fault-seconds, per mode.
        for mode in ("sync", "durable", "async"):
            client, run_id = session(mode)
            emulator.reset()
            errors = []
            count = int(args.fault_seconds / 0.02)
            faults = _faults(emulator, args.fault_seconds)
            started = time.perf_counter()
            samples = log_metrics(client, run_id, mode, count, errors, pace=0.02)
            logging_seconds = time.perf_counter() - started
            faults.join()
            time.sleep(max(0.0, args.fault_seconds - logging_seconds))
            emulator.reset()
            settle = finish(client, mode)
            entry = {
                "log_metric": _summary(samples),
                "logging_seconds": round(logging_seconds, 1),
                "settle_seconds": round(settle, 2),
                "raised": len(errors),
            }
            if mode == "durable":
                entry["spool_peak_bytes"] = client._tracking_client.store.durable_status().get(
                    "peak_size_bytes"
                )
            results[f"faults/{mode}"] = entry
        spark_aml_bridge.disconnect()

    print(json.dumps(results, indent=2))
    healthy_sync = results["healthy/sync"]["log_metric"]["median_ms"]
    print("\nratios (training-thread time, median per call; lower is better):")
    for mode in ("durable", "async"):
        for what in ("log_metric", "log_batch_1000"):
            ratio = results[f"healthy/{mode}"][what]["median_ms"] / max(
                results["healthy/sync"][what]["median_ms"], 1e-9
            )
            print(f"  healthy {what}: {mode} / sync = {ratio:.3f}")
    for mode in ("sync", "durable", "async"):
        entry = results[f"faults/{mode}"]
        print(
            f"  faults {mode}: longest log_metric {entry['log_metric']['max_ms']} ms, "
            f"raised {entry['raised']}, logging took {entry['logging_seconds']} s"
        )
    print(f"  (healthy sync log_metric median: {healthy_sync} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
