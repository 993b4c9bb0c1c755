"""Durable writes in workspace mode (issue 13): writes return at once, reach the workspace once,
survive outages, lost responses and kill -9; reads see the process's own writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import mlflow
import pytest
from durable_support import history, plain_reader
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.cli import main
from spark_aml_bridge.dual.api import status
from spark_aml_bridge.errors import WorkspaceUnreachableError


@pytest.fixture
def durable(use_emulator, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """connect(durable_writes=True) against the emulator, with a spool directory of its own."""
    spool_dir = tmp_path / "spool"
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(spool_dir))
    bridge = spark_aml_bridge.connect(durable_writes=True)
    yield bridge, spool_dir
    use_emulator.reset()
    from spark_aml_bridge.dual.worker import close_all

    close_all(timeout=10)


def _experiment(tag: str) -> str:
    return f"durable-{tag}-{uuid.uuid4().hex[:8]}"


def test_every_kind_of_write_lands_once_and_reads_see_them(durable, use_emulator):
    bridge, spool_dir = durable
    mlflow.set_experiment(_experiment("kinds"))
    import pandas as pd

    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2, 3]}), name="tiny")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 3, "seed": 7})
        mlflow.set_tag("team", "ml")
        for step in range(50):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=0)
        mlflow.log_input(dataset, context="training")
        # Read your writes: the bridge's own client sees everything just logged.
        seen = MlflowClient().get_run(run_id)
        assert seen.data.params == {"lr": "0.1", "depth": "3", "seed": "7"}
        assert seen.data.tags["team"] == "ml"
        assert len(MlflowClient().get_metric_history(run_id, "loss")) == 50
    assert bridge.flush(60)
    reader = plain_reader(use_emulator.info)
    landed = reader.get_run(run_id)
    assert landed.info.status == "FINISHED" and landed.info.end_time
    assert landed.data.metrics == {"loss": 1.0 / 50, "a": 1.0, "b": 2.0}
    points = history(reader, run_id, "loss")
    assert sorted(p[0] for p in points) == list(range(50))
    assert [d.dataset.name for d in landed.inputs.dataset_inputs] == ["tiny"]
    assert status(spool_dir)["totals"]["pending_ops"] == 0  # `mirror status`: no backlog


def test_outage_and_lost_responses_neither_block_nor_lose_nor_duplicate(durable, use_emulator):
    bridge, _ = durable
    mlflow.set_experiment(_experiment("outage"))
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        use_emulator.inject_faults(
            status=503, count=3, retry_after=0, path_contains="log-batch", when="after"
        )
        use_emulator.inject_faults(status=429, count=5, retry_after=1, path_contains="log-batch")
        use_emulator.outage(4)
        longest = 0.0
        for step in range(300):
            started = time.perf_counter()
            mlflow.log_metric("loss", float(step), step=step)
            longest = max(longest, time.perf_counter() - started)
            time.sleep(0.01)
        print(f"longest log_metric during the outage: {longest * 1000:.1f} ms")
        # Read your writes, after the faults: all 300 points, once each.
        assert [m.step for m in MlflowClient().get_metric_history(run_id, "loss")] == list(
            range(300)
        )
    assert bridge.flush(60)
    points = history(plain_reader(use_emulator.info), run_id, "loss")
    assert sorted(p[0] for p in points) == list(range(300))  # 0 lost, 0 duplicated
    assert use_emulator.stats()["faults_injected"] >= 1  # a lost response was replayed


def test_run_creation_keeps_trying_within_its_budget_then_says_why(
    use_emulator, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(tmp_path / "spool"))
    spark_aml_bridge.connect(durable_writes=True, create_run_budget_seconds=10)
    experiment_id = mlflow.set_experiment(_experiment("budget")).experiment_id
    # Throttled for a moment: creation waits it out (Retry-After) and succeeds.
    use_emulator.inject_faults(status=429, count=2, retry_after=1, path_contains="runs/create")
    run = MlflowClient().create_run(experiment_id)
    assert run.info.run_id
    # Down for longer than the budget: one clear error naming the workspace and the cause.
    use_emulator.outage(120)
    started = time.monotonic()
    try:
        with pytest.raises(WorkspaceUnreachableError) as info:
            MlflowClient().create_run(experiment_id)
    finally:
        use_emulator.reset()
    message = str(info.value)
    assert use_emulator.info["workspace_name"] in message and "HTTP 503" in message
    assert "create_run_budget_seconds" in message
    assert time.monotonic() - started < 100  # the budget, not the outage, ended it


TRAINING = textwrap.dedent(
    """
    import json, sys
    import mlflow, spark_aml_bridge

    marker, experiment, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spark_aml_bridge.connect(durable_writes=True)
    mlflow.set_experiment(experiment)
    run = mlflow.start_run()
    with open(marker + ".run", "w") as out:
        out.write(run.info.run_id)
    mlflow.log_param("lr", 0.1)
    for step in range(total):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    with open(marker, "w") as out:  # every write above was accepted
        json.dump({"run": run.info.run_id, "accepted": total}, out)
    import time
    time.sleep(600)
    """
)


def _killed_during_an_outage(use_emulator, tmp_path) -> dict:
    """Run TRAINING in a subprocess, take the workspace down, kill -9 it once every write was
    accepted; returns {"run", "accepted"}. The outage is still on."""
    spool_dir = tmp_path / "spool"
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    marker = tmp_path / "accepted.json"
    env = {**os.environ, **use_emulator.env, "SPARK_AML_BRIDGE_DUAL_SPOOL_DIR": str(spool_dir)}
    total = 400
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), _experiment("kill"), str(total)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(str(marker) + ".run"):
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-3000:]}")
            assert time.monotonic() < deadline, "the training process did not start a run"
            time.sleep(0.05)
        use_emulator.outage(120)  # the workspace goes down while training logs
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-3000:]}")
            assert time.monotonic() < deadline, "training stalled during the outage"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    return json.loads(marker.read_text())


def test_kill_during_an_outage_then_replay_lands_everything_once(use_emulator, tmp_path, capsys):
    spool_dir = tmp_path / "spool"
    accepted = _killed_during_an_outage(use_emulator, tmp_path)
    run_id = accepted["run"]

    # `mirror status` shows the backlog of the dead process.
    assert main(["mirror", "status", "--spool-dir", str(spool_dir), "--json"]) == 0
    (left,) = json.loads(capsys.readouterr().out)["spools"]
    assert not left["owner_alive"] and left["pending_metrics"] >= 1

    use_emulator.reset()  # the workspace is back
    assert main(["mirror", "replay", "--spool-dir", str(spool_dir)]) == 0, capsys.readouterr()
    assert "removed 1" in capsys.readouterr().out
    reader = plain_reader(use_emulator.info)
    points = history(reader, run_id, "loss")
    assert sorted(p[0] for p in points) == list(range(accepted["accepted"]))  # each once
    assert reader.get_run(run_id).data.params == {"lr": "0.1"}
    # A second replay finds nothing.
    assert main(["mirror", "replay", "--spool-dir", str(spool_dir)]) == 0
    assert "replayed 0 spool(s)" in capsys.readouterr().out


def test_the_next_connect_replays_what_a_killed_process_left(
    use_emulator, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    accepted = _killed_during_an_outage(use_emulator, tmp_path)
    use_emulator.reset()
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(tmp_path / "spool"))
    spark_aml_bridge.connect(durable_writes=True)
    mlflow.set_experiment(_experiment("next"))
    with mlflow.start_run():  # the first write opens this process's spool: it replays the other
        mlflow.log_metric("x", 1.0)
    reader = plain_reader(use_emulator.info)
    deadline = time.monotonic() + 120
    while len(history(reader, accepted["run"], "loss")) < accepted["accepted"]:
        assert time.monotonic() < deadline, "the next connect() did not replay the spool"
        time.sleep(0.5)
    time.sleep(1.0)  # a replay that sent anything twice would show it now
    points = history(reader, accepted["run"], "loss")
    assert sorted(p[0] for p in points) == list(range(accepted["accepted"]))


def test_a_failed_model_upload_is_never_reported_as_logged(durable, use_emulator):
    """Uploads keep their own retries; a refusal the SDK does not retry (HTTP 400 from blob
    storage, the emulator's non-retryable fault) fails log_model, and nothing claims the model."""
    from sklearn.linear_model import LinearRegression

    mlflow_3 = int(mlflow.__version__.split(".")[0]) >= 3
    name_kw = {"name": "model"} if mlflow_3 else {"artifact_path": "model"}
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    experiment_id = mlflow.set_experiment(_experiment("model")).experiment_id
    with mlflow.start_run() as run:
        use_emulator.inject_faults(status=400, count=1, path_contains="/MLmodel")
        started = time.monotonic()
        with pytest.raises(Exception, match="400|InvalidInput|Injected fault"):
            mlflow.sklearn.log_model(model, **name_kw)
        assert time.monotonic() - started < 60  # not minutes of SDK retries
        mlflow.log_metric("after", 1.0)  # the run goes on
    bridge, _ = durable
    assert bridge.flush(60)
    landed = plain_reader(use_emulator.info).get_run(run.info.run_id)
    assert "mlflow.log-model.history" not in landed.data.tags
    assert landed.data.metrics == {"after": 1.0}
    if mlflow_3:
        models = MlflowClient().search_logged_models(experiment_ids=[experiment_id])
        assert all(str(m.status) != "READY" for m in models)
