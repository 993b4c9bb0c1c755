"""A training process killed with SIGKILL mid-run; `mirror replay` finishes its spool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from spark_aml_bridge.cli import main
from spark_aml_bridge.dual.api import status
from spark_aml_bridge.dual.uri import MIRROR_RUN_TAG

TRAINING = textwrap.dedent(
    """
    import json, sys
    import mlflow, spark_aml_bridge

    marker, experiment = sys.argv[1], sys.argv[2]
    spark_aml_bridge.connect()
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="interrupted") as run:
        mlflow.log_params({"lr": 0.1, "epochs": 1000})
        with mlflow.start_run(run_name="finished-child", nested=True) as child:
            mlflow.log_metric("child_metric", 7.0)
        step = 0
        while True:
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            if step % 25 == 0:
                mlflow.log_metrics({"a": step, "b": -step}, step=step)
            if step == 150:
                with open(marker, "w") as out:
                    json.dump({"run": run.info.run_id, "child": child.info.run_id}, out)
            step += 1
    """
)


def test_replay_after_kill_makes_the_mirror_equal_the_primary(
    dual_env, dual_primary, use_emulator, tmp_path, capsys
):
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    marker = tmp_path / "marker.json"
    experiment = f"/Users/dual@example.com/tests/crash-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **dual_env}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), experiment],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("training did not reach step 150 in 180 s")
            time.sleep(0.1)
        ids = json.loads(marker.read_text())
        # The mirror stops taking metrics: writes pile up in the spool, then the process dies.
        use_emulator.inject_faults(status=503, count=100_000, path_contains="runs/log-batch")
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    use_emulator.reset()

    spool_dir = dual_env["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"]
    (left,) = status(spool_dir)["spools"]
    assert not left["owner_alive"] and left["pending_ops"] > 0 and left["open_runs"] >= 1

    assert main(["mirror", "replay", "--spool-dir", spool_dir]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "replayed 1 spool(s), removed 1" in out
    assert status(spool_dir)["spools"] == []

    primary = MlflowClient(dual_primary[0])
    experiment_id = primary.get_experiment_by_name(experiment).experiment_id
    assert main(["mirror", "verify", "--experiment-id", experiment_id]) == 0, capsys.readouterr()
    assert "no difference" in capsys.readouterr().out

    run = primary.get_run(ids["run"])
    assert run.info.status == "RUNNING"  # nobody ended it: as on the primary
    mirror = MlflowClient(use_emulator.info["tracking_uri"])
    mirrored = mirror.get_run(run.data.tags[MIRROR_RUN_TAG])
    assert mirrored.info.status == "RUNNING" and mirrored.info.end_time is None
    assert mirror.get_run(primary.get_run(ids["child"]).data.tags[MIRROR_RUN_TAG]).info.status == (
        "FINISHED"
    )
    loss = mirror.get_metric_history(mirrored.info.run_id, "loss")
    assert len(loss) == len(primary.get_metric_history(ids["run"], "loss")) > 150
    assert len({m.step for m in loss}) == len(loss)  # no duplicate points

    # A second replay finds nothing to do.
    assert main(["mirror", "replay", "--spool-dir", spool_dir]) == 0
    assert "replayed 0 spool(s)" in capsys.readouterr().out
