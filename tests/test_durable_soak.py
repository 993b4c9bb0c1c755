"""The issue-13 soak, as a test (~2 min, loopback only): a training loop logs a metric every 20 ms
through connect() in workspace mode with durable writes, against a workspace whose tokens live
5 s, through the emulator's own faults: a 429 storm (40 with Retry-After: 1), 15 lost responses
(503 after the write was applied), a token revocation and a 20 s outage.

Measured: calls raised into user code (must be 0), the training thread's longest write (reported;
see the bound below), points lost or duplicated (0, read back by a separate plain MLflow client
with a bearer token), and read-your-writes after each fault.
"""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from durable_support import history, plain_reader
from mlflow.tracking import MlflowClient

import spark_aml_bridge

# The acceptance measure is a longest write <= 1 s (it was 48.8 s synchronously); the
# typical write here is ~1 ms. The assertion is looser, 5 s, so a loaded 2-core CI machine's
# scheduling stalls cannot fail it, while any write that waited for the workspace (the outage
# alone lasts 8-20 s) still does. The measured value is printed and reported in the issue note.
LONGEST_WRITE_BOUND = 5.0
INTERVAL = 0.02
# The schedule runs on the newest MLflow. The MLflow 2 suite runs every kind of fault
# on a shorter schedule (~70 s instead of ~200 s) to keep the whole CI within its time budget.
if mlflow.__version__.startswith("3."):
    STORM, LOST, OUTAGE = 40, 15, 20
else:
    STORM, LOST, OUTAGE = 10, 5, 8


class Training:
    """The user's loop: one metric every 20 ms; counts what raised and times every write."""

    def __init__(self) -> None:
        self.step = 0
        self.raised: list[str] = []
        self.longest = 0.0
        self.durations: list[float] = []
        self.values: dict[int, float] = {}

    def train_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = 1.0 / (self.step + 1)
            started = time.perf_counter()
            try:
                mlflow.log_metric("loss", value, step=self.step)
            except Exception as exc:  # noqa: BLE001 - exactly what the issue counts
                self.raised.append(f"step {self.step}: {type(exc).__name__}: {exc}"[:300])
            spent = time.perf_counter() - started
            self.durations.append(spent)
            self.longest = max(self.longest, spent)
            self.values[self.step] = value
            self.step += 1
            time.sleep(max(INTERVAL - spent, 0.0))

    def train_until_consumed(self, emulator, at_least: float, at_most: float = 90.0) -> None:
        """Train at least `at_least` seconds, then on until every injected fault was served."""
        self.train_for(at_least)
        deadline = time.monotonic() + at_most
        while emulator.admin("GET", "faults")["pending"] and time.monotonic() < deadline:
            self.train_for(0.25)

    def read_your_writes(self, run_id: str, phase: str, report: list[str]) -> None:
        started = time.monotonic()
        steps = [m.step for m in MlflowClient().get_metric_history(run_id, "loss")]
        waited = time.monotonic() - started
        report.append(f"{phase}: read {len(steps)} of {self.step} points after {waited:.1f} s")
        assert sorted(steps) == list(range(self.step)), f"read-your-writes failed after {phase}"


def test_soak_training_never_fails_or_stalls_and_nothing_is_lost(
    token_5s_emulator, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    emulator = token_5s_emulator
    for name, value in emulator.info["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(tmp_path / "spool"))
    # The worker, not the training thread, waits out the faults: reads may wait that long.
    bridge = spark_aml_bridge.connect(durable_writes=True, durable_read_wait_seconds=120)
    mlflow.set_experiment(f"soak-{uuid.uuid4().hex[:8]}")
    training, report = Training(), []
    emulator.reset_stats()
    started = time.monotonic()
    try:
        with mlflow.start_run() as run:
            run_id = run.info.run_id
            mlflow.log_params({"lr": 0.01, "batch": 64})
            training.train_for(3)
            training.read_your_writes(run_id, "healthy", report)

            emulator.inject_faults(status=429, count=STORM, retry_after=1)
            training.train_until_consumed(emulator, 5)
            training.read_your_writes(run_id, f"429 storm ({STORM} x Retry-After: 1)", report)

            # One at a time, each after the workspace answered again (back-to-back failures
            # would only grow the worker's backoff and the test's length).
            for _ in range(LOST):
                emulator.inject_faults(status=503, path_contains="log-batch", when="after")
                training.train_until_consumed(emulator, 0.2)
                training.train_for(0.3)
            training.read_your_writes(run_id, f"{LOST} lost responses", report)

            emulator.revoke_tokens()
            training.train_for(4)
            training.read_your_writes(run_id, "token revocation", report)

            emulator.outage(OUTAGE)
            training.train_for(OUTAGE + 4)
            training.read_your_writes(run_id, f"{OUTAGE} s outage", report)
        assert bridge.flush(120)
    finally:
        stats = emulator.stats()
        emulator.reset()
    elapsed = time.monotonic() - started
    durations = sorted(training.durations)
    median = durations[len(durations) // 2]
    report.append(
        f"{training.step} writes in {elapsed:.0f} s; longest {training.longest * 1000:.1f} ms, "
        f"median {median * 1000:.2f} ms; raised {len(training.raised)}; faults injected "
        f"{stats['faults_injected']}, 401s {stats['auth_failures']}"
    )
    print("\n".join(["", "soak:", *report]))

    assert training.raised == []  # 0 calls raised into user code
    assert training.longest <= LONGEST_WRITE_BOUND, report[-1]
    assert stats["faults_injected"] == STORM + LOST  # the storm and the lost responses all happened
    # Read back by a separate plain MLflow client (bearer token, no bridge): 0 lost, 0 duplicated.
    reader = plain_reader(emulator.info)
    points = history(reader, run_id, "loss")
    assert len(points) == training.step
    assert sorted((step, value) for step, _, value in points) == sorted(training.values.items())
    landed = reader.get_run(run_id)
    assert landed.info.status == "FINISHED" and landed.data.params == {"lr": "0.01", "batch": "64"}
