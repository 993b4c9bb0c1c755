"""The mirror down for 30 s mid-run, then 429/503 storms: training never waits for it, and
afterwards the mirror equals the primary. (The one long dual-tracking test.)"""

from __future__ import annotations

import time
import uuid

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.cli import main


def _train(seconds: float, step: int, durations: list[float], run_id: str) -> int:
    client = MlflowClient()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.perf_counter()
        if step % 20 == 0:
            now = int(time.time() * 1000)
            batch = [Metric(f"b{i % 5}", float(i), now, step * 100 + i) for i in range(100)]
            client.log_batch(run_id, metrics=batch)
        else:
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        durations.append(time.perf_counter() - started)
        step += 1
    return step


def test_outage_and_throttling_never_make_training_wait(dual_env, use_emulator, capsys):
    bridge = spark_aml_bridge.connect()
    name = f"/Users/dual@example.com/tests/outage-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow.set_experiment(name).experiment_id
    before: list[float] = []
    during: list[float] = []
    storms: list[float] = []
    with mlflow.start_run() as run:
        mlflow.log_param("phase", "all")
        step = _train(3, 0, before, run.info.run_id)
        assert bridge.dual.flush(60)  # the run exists on the mirror before it goes away

        use_emulator.outage(30)
        step = _train(31, step, during, run.info.run_id)
        status = bridge.dual.status()
        assert status["pending_ops"] > 0 and status["last_error"], status

        use_emulator.inject_faults(status=429, count=8, retry_after=1)
        use_emulator.inject_faults(status=503, count=8, retry_after=1)
        step = _train(6, step, storms, run.info.run_id)
        mlflow.set_tag("done", "yes")

    # Training never waited for the mirror: no call took anywhere near an outage or a retry
    # sequence (MLflow alone would retry a 503 for seconds), and it kept its pace.
    assert max(during) < 5.0 and max(storms) < 5.0, (max(during), max(storms))
    assert len(during) > 31 / (5 * max(sum(before) / len(before), 0.01))

    assert bridge.dual.flush(240), bridge.dual.status()
    assert bridge.dual.status()["dead_letters"] == 0
    assert main(["mirror", "verify", "--experiment-id", experiment_id]) == 0, capsys.readouterr()
    assert "no difference" in capsys.readouterr().out
