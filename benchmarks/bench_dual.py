"""Dual-tracking benchmarks, side by side in one run against one emulator.

Primary: the emulator's Databricks workspace double (tracking URI ``databricks``); mirror: the
emulator's Azure ML workspace. Prints one JSON object.

1. Training-thread time of 5,000 ``log_metric`` and of 100 ``log_batch(1000)`` in dual mode vs
   primary only (interleaved blocks, each side logging to its own run) — target ratio <= 1.10.
   The mirror drains concurrently (paced while training writes), as in real use; after each
   dual block the mirror is flushed, untimed, so no deferred mirror work lands in a
   primary-only block (the catch-up time is reported).
2. Mirror drain rate: a spool holding 100,000 metric points (100 batches) applied to the
   workspace — target >= 5,000 metrics/s.
3. Spool peak size, and peak RSS growth of the training process over a 100,000-metric dual run.

Usage: python benchmarks/bench_dual.py [--metric-calls 5000] [--batches 100] [--rounds 10]
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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    def __init__(self) -> None:
        self.start = _rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        return self.peak - self.start


def _metric_block(client, run_id: str, count: int, offset: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        client.log_metric(run_id, "m", float(i), step=offset + i)
    return time.perf_counter() - started


def _batch(offset: int) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(f"k{j % 20}", float(j), now, offset + j) for j in range(1000)]


def _batch_block(client, run_id: str, count: int, offset: int) -> float:
    batches = [_batch((offset + b) * 1000) for b in range(count)]
    started = time.perf_counter()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    return time.perf_counter() - started


def _interleaved(block, dual_client, dual_run, base_client, base_run, total, rounds, flush):
    """Alternate primary-only and dual blocks. After each dual block the mirror is flushed
    (untimed, reported as catch-up) so its deferred work never lands in a primary-only block."""
    per_round = total // rounds
    dual_times, base_times, catch_up = [], [], []
    for r in range(rounds):
        order = [(dual_client, dual_run, dual_times), (base_client, base_run, base_times)]
        if r % 2:
            order.reverse()
        for client, run_id, sink in order:
            sink.append(block(client, run_id, per_round, r * per_round))
            if sink is dual_times:
                started = time.perf_counter()
                flush()
                catch_up.append(time.perf_counter() - started)
    return dual_times, base_times, catch_up


def _ratio(dual_times, base_times, catch_up) -> dict:
    return {
        "mirror_catch_up_after_blocks_s": round(sum(catch_up), 3),
        "dual_s": round(sum(dual_times), 3),
        "primary_only_s": round(sum(base_times), 3),
        "ratio": round(sum(dual_times) / sum(base_times), 3),
        "ratio_median_block": round(
            statistics.median(dual_times) / statistics.median(base_times), 3
        ),
    }


def _drain_rate(store, workspace_uri: str, spool_dir: str, metrics: int) -> dict:
    """Fill a spool with `metrics` points for one run, then time applying it to the workspace."""
    from spark_aml_bridge.dual import codec
    from spark_aml_bridge.dual.mirror import Mirror
    from spark_aml_bridge.dual.sides import build_store
    from spark_aml_bridge.dual.spool import Spool
    from spark_aml_bridge.dual.worker import MirrorLink  # noqa: F401 - same code path

    primary = store.primary
    experiment_id = primary.create_experiment(f"bench-drain-{time.time_ns()}")
    run = primary.create_run(experiment_id, "bench", int(time.time() * 1000), [], "drain")
    spool = Spool.create(spool_dir, store.primary_uri, workspace_uri)
    spool.append(
        "create_run",
        run.info.run_id,
        {
            "e": experiment_id,
            "u": "bench",
            "s": run.info.start_time,
            "n": run.info.run_name,
            "t": [[k, v] for k, v in run.data.tags.items()],
        },
    )
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    for b in range(metrics // 1000):
        batch = [Metric(f"k{j % 20}", float(j), now, b * 1000 + j) for j in range(1000)]
        spool.append("batch", run.info.run_id, {"m": codec.metrics_out(batch)}, 1000, bulky=True)
    size = spool.size_bytes()
    mirror = Mirror(
        primary,
        build_store(workspace_uri),
        primary_uri=store.primary_uri,
        mirror_uri=workspace_uri,
        spool=spool,
    )
    mirror.experiment_id(experiment_id)  # not timed: one-off experiment setup
    started = time.perf_counter()
    sent = 0
    while True:
        ops = spool.fetch()
        if not ops:
            break
        sent += mirror.apply(ops)
    elapsed = time.perf_counter() - started
    spool.close()
    return {
        "metrics": sent,
        "seconds": round(elapsed, 3),
        "metrics_per_s": round(sent / elapsed),
        "spool_bytes_with_100k_pending": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metric-calls", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--drain-metrics", type=int, default=100_000)
    args = parser.parse_args()

    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _get_store

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    with (
        tempfile.TemporaryDirectory() as state,
        tempfile.TemporaryDirectory() as spool_dir,
        start_emulator(state) as emulator,
    ):
        info = emulator.info
        if not info.get("databricks_host"):
            print("this emulator runs no Databricks double", file=sys.stderr)
            return 2
        os.environ.update(info["env"])
        os.environ["DATABRICKS_HOST"] = info["databricks_host"]
        os.environ["DATABRICKS_TOKEN"] = info["databricks_token"]
        os.environ["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"] = spool_dir
        bridge = spark_aml_bridge.connect(mode="dual", dual_primary="databricks")
        dual_client = MlflowClient(tracking_uri=bridge.tracking_uri)
        base_client = MlflowClient(tracking_uri="databricks")
        store = _get_store(bridge.tracking_uri)
        experiment_id = dual_client.create_experiment(f"/Users/bench/dual-{time.time_ns()}")

        def new_runs():
            d = dual_client.create_run(experiment_id, run_name="dual").info.run_id
            b = base_client.create_run(experiment_id, run_name="primary-only").info.run_id
            return d, b

        # warm both paths (SDK init, connection pools, mirror store)
        dual_run, base_run = new_runs()
        _metric_block(dual_client, dual_run, 50, 10**6)
        _metric_block(base_client, base_run, 50, 10**6)
        bridge.dual.flush(60)

        def flush():
            if not bridge.dual.flush(600):
                raise RuntimeError("the mirror did not catch up within 600 s")

        dual_run, base_run = new_runs()
        metric_times = _interleaved(
            _metric_block, dual_client, dual_run, base_client, base_run, args.metric_calls,
            args.rounds, flush,
        )  # fmt: skip
        dual_run, base_run = new_runs()
        batch_times = _interleaved(
            _batch_block, dual_client, dual_run, base_client, base_run, args.batches,
            args.rounds, flush,
        )  # fmt: skip
        peak_after_timing = store.mirror_status().get("peak_size_bytes")

        # 100k metrics (100 x log_batch(1000), built one at a time) through the dual store,
        # RSS sampled while the mirror drains; then until the mirror has it all.
        run_id = dual_client.create_run(experiment_id, run_name="rss-100k").info.run_id
        rss = PeakRss()
        started = time.perf_counter()
        for b in range(100):
            dual_client.log_batch(run_id, metrics=_batch(b * 1000))
        rss_run_s = time.perf_counter() - started
        flush()
        rss_growth = rss.stop()
        status = store.mirror_status()

        drain = _drain_rate(store, bridge.dual.mirror_uri, spool_dir, args.drain_metrics)

        result = {
            "mlflow": mlflow.__version__,
            "primary": "databricks double (databricks-sdk path)",
            "mirror": "workspace emulator (azureml, HTTPS)",
            "log_metric": {"calls": args.metric_calls, **_ratio(*metric_times)},
            "log_batch_1000": {"calls": args.batches, **_ratio(*batch_times)},
            "drain": drain,
            "spool_peak_bytes": max(peak_after_timing or 0, status.get("peak_size_bytes") or 0),
            "rss_growth_100k_metric_run_mb": round(rss_growth / 2**20, 1),
            "rss_run_s": round(rss_run_s, 2),
            "spool_counters": status.get("counters"),
        }
        spark_aml_bridge.disconnect()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
