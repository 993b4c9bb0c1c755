"""Spark tasks on separate executor processes log to the workspace for as long as the job runs.

The scenarios with separate executors run a driver of their own in a subprocess (pytest holds
the session's Spark): Spark's `local-cluster[2,1,1024]` master, i.e. two executor JVMs, each
with its own Python workers. Tokens live 5 seconds, so most tasks start long after the driver's
first token expired. What landed is read back by a separate, plain MLflow client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pytest

import spark_aml_bridge

JOBS = Path(__file__).parent / "spark_jobs"
MASTER = "local-cluster[2,1,1024]"
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")
# The full job (64 tasks) runs on the newest MLflow; the MLflow 2 suite runs the same
# job with 16 tasks (still 8 rounds of ~3 s on 2 executors, several token lifetimes), which keeps
# the whole CI within its time budget. Same code path, same assertions.
SCALE_TASKS = 64 if mlflow.__version__.startswith("3.") else 16
KINDS = ("rdd", "mapInPandas", "applyInPandas", "pandas_udf", "python_udf", "foreachPartition")


def _run_driver(emulator, scenario: str, reuse: bool, out_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SPARK_AML"))}
    env.update(emulator.info["env"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and "site-packages" not in p)
    env["SCALE_TASKS"] = str(SCALE_TASKS)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            str(JOBS / "executor_jobs.py"),
            scenario,
            MASTER,
            "reuse" if reuse else "no-reuse",
            str(out_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-6000:]
    return json.loads(lines[-1][len("RESULTS ") :])


def _read_back(emulator, parent_run_id: str, *keys: str) -> dict:
    """The parent and its child runs, as a plain MLflow client (bearer token, no bridge) sees
    them."""
    info_file = Path(emulator.state_dir) / "emulator.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "AZURE_"))}
    proc = subprocess.run(
        [sys.executable, str(JOBS / "plain_reader.py"), str(info_file), parent_run_id, *keys],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("READ ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("READ ") :])


def _assert_nothing_leaks(emulator, results: dict, out_dir: Path) -> None:
    """No secret and no token in Spark conf, the Spark UI, the event log, or logs at DEBUG."""
    secrets = (results["secret"], emulator.info["client_secret"])
    places = {
        "Spark conf": json.dumps(results["conf"]),
        "Spark UI environment": results["ui_environment"],
        "event log": "".join(  # Spark 4 writes a directory of rolling files
            p.read_text(errors="replace") for p in (out_dir / "events").rglob("*") if p.is_file()
        ),
        "driver log at DEBUG": (out_dir / "driver-debug.log").read_text(errors="replace"),
    }
    assert "spark.app.name" in places["Spark UI environment"]
    assert "py4j" in places["driver log at DEBUG"]  # py4j really logged at DEBUG
    assert "SparkListenerJobStart" in places["event log"]
    for where, text in places.items():
        assert not JWT.search(text), f"a token in the {where}"
        for secret in secrets:
            assert secret not in text, f"a secret in the {where}"


@pytest.fixture(scope="module")
def reused_workers_run(token_5s_emulator, tmp_path_factory):
    """One application with worker reuse on: every kind of Python code, then SCALE_TASKS tasks.

    Shared by two tests so the suite starts those executors once."""
    out_dir = tmp_path_factory.mktemp("reused-workers")
    token_5s_emulator.reset_stats()
    results = _run_driver(token_5s_emulator, "kinds+scale", True, out_dir)
    return results, token_5s_emulator.stats(), out_dir


def _check_every_kind(emulator, results: dict, out_dir: Path) -> None:
    kinds = results["kinds"]
    read = _read_back(emulator, kinds["parent_run_id"], "value")
    by_kind: dict[str, list[dict]] = {}
    for child in read["children"].values():
        by_kind.setdefault(child["params"]["kind"], []).append(child)
        assert child["status"] == "FINISHED"
        assert child["tags"]["spark_aml_bridge.role"] == "executor"
        assert child["tags"]["spark_aml_bridge.spark_task"].startswith("stage ")
    assert set(by_kind) == set(KINDS)
    for kind, ids in kinds["ids"].items():
        assert sorted(ids) == sorted(
            r for r, c in read["children"].items() if c["tags"]["kind"] == kind
        )
    assert sorted(c["metrics"]["value"] for c in by_kind["python_udf"]) == [0, 1, 2, 3]
    assert sorted(c["metrics"]["value"] for c in by_kind["rdd"]) == [2, 2]
    # Tokens came from the driver: each Python process asks at most about once per token
    # lifetime (the token cache refreshes at 75% of a lifetime), never once per task or call.
    service = results["service"]
    lifetimes = results["seconds"] / 5.0 + 1
    assert service["token_requests"] >= 1 and service["rejected"] == 0
    assert service["max_token_requests_per_client"] <= 2 * lifetimes
    _assert_nothing_leaks(emulator, results, out_dir)


def test_every_kind_of_python_code_logs_from_reused_workers(reused_workers_run, token_5s_emulator):
    results, _, out_dir = reused_workers_run
    _check_every_kind(token_5s_emulator, results, out_dir)


def test_every_kind_of_python_code_logs_from_fresh_workers(token_5s_emulator, tmp_path):
    results = _run_driver(token_5s_emulator, "kinds", False, tmp_path)
    _check_every_kind(token_5s_emulator, results, tmp_path)


def test_many_tasks_log_every_point_across_many_token_lifetimes(
    reused_workers_run, token_5s_emulator
):
    results, stats, _ = reused_workers_run
    scale = results["scale"]
    read = _read_back(token_5s_emulator, scale["parent_run_id"], "m")

    assert len(scale["tasks"]) == SCALE_TASKS  # no task failed (Spark would have failed the job)
    children = read["children"]
    assert len(children) == SCALE_TASKS
    for index, run_id, _pid, _ppid in scale["tasks"]:
        history = children[run_id]["histories"]["m"]
        assert history == [[step, float(index * 1000 + step)] for step in range(100)]
        assert children[run_id]["status"] == "FINISHED"

    lifetimes = results["seconds"] / 5.0 + 1
    service = results["service"]
    # Executors: about one token request per Python worker process per token lifetime.
    assert service["token_clients"] >= scale["python_workers"]
    assert service["max_token_requests_per_client"] <= 2 * lifetimes
    assert service["token_requests"] <= service["token_clients"] * 2 * lifetimes
    # Azure AD: only the driver asks, about once per lifetime (the reader asks its own later).
    aad = stats["token_requests"]["total"]
    assert aad <= 2 * lifetimes + 5, (aad, lifetimes)
    assert scale["python_daemons"] == 2  # two separate executors did the work


def _long_task(seconds: float, pause: float):
    def run(rows):
        import time

        import mlflow

        import spark_aml_bridge

        with spark_aml_bridge.task_run(run_name="long") as run:
            step, end = 0, time.time() + seconds
            while time.time() < end:
                mlflow.log_metric("tick", float(step), step=step)
                step += 1
                time.sleep(pause)
        yield run.info.run_id, step

    return run


def test_a_30_second_task_keeps_logging_with_5_second_tokens(token_5s_emulator, spark, monkeypatch):
    for name, value in token_5s_emulator.info["env"].items():
        monkeypatch.setenv(name, value)
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(f"long-task-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as parent:
        started = time.time()
        [(run_id, steps)] = (
            spark.sparkContext.parallelize([0], 1).mapPartitions(_long_task(30.0, 0.25)).collect()
        )
        elapsed = time.time() - started
    service = bridge._executors.stats()
    read = _read_back(token_5s_emulator, parent.info.run_id, "tick")

    assert elapsed >= 30 and steps >= 60
    assert read["children"][run_id]["histories"]["tick"] == [[s, float(s)] for s in range(steps)]
    # One Python worker asked the driver a few times per token lifetime at most.
    assert service["token_clients"] == 1
    assert 30 / 5 <= service["token_requests"] <= 2 * (elapsed / 5 + 1)


def _into_the_drivers_run():
    def log(batches):
        import mlflow
        import pandas as pd

        import spark_aml_bridge

        for frame in batches:
            with spark_aml_bridge.task_run(child=False) as run:
                mlflow.log_metric(f"rows_{int(frame['id'].iloc[0])}", len(frame))
            yield pd.DataFrame({"run_id": [run.info.run_id]})

    return log


def test_task_run_logs_into_the_drivers_run_and_leaves_it_running(use_emulator, spark):
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"into-driver-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as parent:
        rows = (
            spark.range(0, 10, numPartitions=2)
            .mapInPandas(_into_the_drivers_run(), "run_id string")
            .collect()
        )
        assert {r.run_id for r in rows} == {parent.info.run_id}
        mid = mlflow.get_run(parent.info.run_id)
        assert mid.info.status == "RUNNING"
        mlflow.log_metric("driver", 1)
    done = mlflow.get_run(parent.info.run_id)
    assert done.info.status == "FINISHED"
    assert set(done.data.metrics) == {"rows_0", "rows_5", "driver"}


def _try_task_run():
    def attempt(batches):
        import pandas as pd

        import spark_aml_bridge

        for _frame in batches:
            try:
                with spark_aml_bridge.task_run():
                    message = "no error"
            except Exception as exc:  # noqa: BLE001 - the message is what the test checks
                message = f"{type(exc).__name__}: {exc}"
            yield pd.DataFrame({"message": [message]})

    return attempt


def test_task_run_without_a_linked_driver_names_the_driver_side_alternative(use_emulator, spark):
    spark_aml_bridge.connect(executors=False)
    with mlflow.start_run():
        [row] = (
            spark.range(0, 1, numPartitions=1)
            .mapInPandas(_try_task_run(), "message string")
            .collect()
        )
    assert "no link to its driver" in row.message
    assert "foreachBatch" in row.message and "on the driver" in row.message


def test_task_run_needs_an_active_run_on_the_driver(use_emulator, spark):
    spark_aml_bridge.connect()
    [row] = (
        spark.range(0, 1, numPartitions=1).mapInPandas(_try_task_run(), "message string").collect()
    )
    assert "the Spark driver has no active MLflow run" in row.message
    assert "with mlflow.start_run()" in row.message


def _log_without_a_link():
    def log(batches):
        import mlflow
        import pandas as pd

        for _frame in batches:
            try:
                with mlflow.start_run():
                    mlflow.log_metric("x", 1)
                message = "no error"
            except Exception as exc:  # noqa: BLE001 - the message is what the test checks
                message = f"{type(exc).__name__}: {exc}"
            yield pd.DataFrame({"message": [message]})

    return log


def test_an_unlinked_task_is_told_the_driver_side_alternative(use_emulator, spark):
    """What tasks see where the driver cannot link them (Spark Connect, Databricks shared access
    mode, serverless): the workspace from cluster-wide settings, no identity of their own."""
    info = use_emulator.info
    spark_aml_bridge.connect(executors=False)
    environment = spark.sparkContext.environment
    cluster_env = {
        "MLFLOW_TRACKING_URI": info["tracking_uri"],
        "SPARK_AML_BRIDGE_CA_BUNDLE": info["ca_bundle"],
        "SPARK_AML_BRIDGE_AUTHORITY": info["authority"],
        # The test JVM may have inherited a service principal: executors here have none.
        "AZURE_CLIENT_ID": "",
        "AZURE_CLIENT_SECRET": "",
        "AZURE_TENANT_ID": "",
    }
    saved = {k: environment.get(k) for k in cluster_env}
    environment.update(cluster_env)
    try:
        [row] = (
            spark.range(0, 1, numPartitions=1)
            .mapInPandas(_log_without_a_link(), "message string")
            .collect()
        )
    finally:
        for key, value in saved.items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
    assert row.message.startswith("CredentialError")
    assert "this Spark task has no link to its driver" in row.message
    assert "log them on the driver" in row.message and "foreachBatch" in row.message


def _log_point(name: str):
    def log(rows):
        import mlflow

        import spark_aml_bridge

        with spark_aml_bridge.task_run(child=False) as run:
            mlflow.log_metric(name, 1.0)
        yield run.info.run_id

    return log


def test_a_token_the_workspace_rejects_is_replaced_for_executors(use_emulator, spark):
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(f"revoked-{uuid.uuid4().hex[:8]}")
    rdd = spark.sparkContext.parallelize([0], 1)
    try:
        with mlflow.start_run() as parent:
            rdd.mapPartitions(_log_point("before")).collect()
            time.sleep(1.1)  # token times have whole seconds: revoke after the current one
            use_emulator.revoke_tokens()
            # The worker's cached token now gets 401: it names it to the driver, which replaces
            # it (its own copy of that token is rejected too) instead of handing it out again.
            rdd.mapPartitions(_log_point("after")).collect()
    finally:
        use_emulator.reset()
    assert set(mlflow.get_run(parent.info.run_id).data.metrics) == {"before", "after"}
    assert bridge._executors.stats()["token_requests"] >= 2
