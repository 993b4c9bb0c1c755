"""Durable writes reach Spark executors (issue 13, item 6): each Python worker spools its writes on
local disk and returns at once; a separate plain client then finds every point once."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from durable_support import history, plain_reader

import spark_aml_bridge

POINTS = 40


@pytest.fixture
def durable_spark(use_emulator, spark, tmp_path, monkeypatch: pytest.MonkeyPatch):
    spool_dir = tmp_path / "spool"
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(spool_dir))
    bridge = spark_aml_bridge.connect(durable_writes=True)
    yield bridge, spool_dir
    spark_aml_bridge.disconnect()
    use_emulator.reset()
    from spark_aml_bridge.dual.worker import close_all

    close_all(timeout=10)


def _log_durably(experiment_id: str, points: int):
    def log(batches):
        import os

        import mlflow
        import pandas as pd
        from mlflow.tracking._tracking_service.utils import _get_store

        for frame in batches:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                store = _get_store()
                started = time.perf_counter()
                for step in range(points):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                longest = time.perf_counter() - started
                link = store.durable_link(create=False)
                spool = str(link.spool.path) if link is not None else ""
            yield pd.DataFrame(
                {
                    "run_id": [run.info.run_id],
                    "store": [type(store).__name__],
                    "spool": [spool],
                    "pid": [os.getpid()],
                    "rows": [len(frame)],
                    "seconds": [longest],
                }
            )

    return log


def test_executor_tasks_spool_locally_and_every_point_lands_once(
    durable_spark, use_emulator, spark
):
    _, spool_dir = durable_spark
    experiment_id = mlflow.set_experiment(f"durable-exec-{uuid.uuid4().hex[:8]}").experiment_id
    schema = "run_id string, store string, spool string, pid long, rows long, seconds double"
    rows = (
        spark.range(0, 40, numPartitions=4)
        .mapInPandas(_log_durably(experiment_id, POINTS), schema)
        .collect()
    )

    assert len(rows) == 4
    # Every Python worker wrote through the durable store into a spool of its own on local disk.
    assert {r.store for r in rows} == {"DurableWorkspaceStore"}
    assert all(r.spool.startswith(str(spool_dir)) for r in rows), [r.spool for r in rows]

    reader = plain_reader(use_emulator.info)
    deadline = time.monotonic() + 120
    pending = {r.run_id for r in rows}
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            landed = reader.get_run(run_id)
            if landed.info.status == "FINISHED" and len(history(reader, run_id, "loss")) >= POINTS:
                pending.discard(run_id)
        time.sleep(1)
    assert not pending, f"runs whose writes never reached the workspace: {sorted(pending)}"
    for r in rows:
        points = history(reader, r.run_id, "loss")
        assert sorted(step for step, _, _ in points) == list(range(POINTS))  # once each
