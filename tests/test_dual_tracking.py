"""Dual tracking end to end: unchanged MLflow code, primary = the Databricks workspace double
(or a local store), mirror = the workspace emulator; `mirror verify` finds no difference."""

from __future__ import annotations

import json
import uuid

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.cli import main
from spark_aml_bridge.dual.uri import (
    MIRROR_RUN_TAG,
    ORIGIN_TAG,
    PRIMARY_EXPERIMENT_TAG,
    PRIMARY_RUN_TAG,
)

MLFLOW_3 = int(mlflow.__version__.split(".")[0]) >= 3


def _name(prefix: str) -> str:
    return f"/Users/dual@example.com/tests/{prefix}-{uuid.uuid4().hex[:8]}"


def _verify(capsys, *selectors: str) -> tuple[int, str]:
    code = main(["mirror", "verify", *selectors])
    out = capsys.readouterr().out
    return code, out


def _mirror_run(bridge, primary_run_id: str):
    mirror = MlflowClient(bridge.dual.mirror_uri)
    primary = MlflowClient(bridge.dual.primary_uri)
    mirror_id = primary.get_run(primary_run_id).data.tags[MIRROR_RUN_TAG]
    return mirror.get_run(mirror_id)


def _log_model(features, labels):
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=300).fit(features, labels)
    kwargs = {"name": "model", "serialization_format": "cloudpickle"} if MLFLOW_3 else {}
    if not MLFLOW_3:
        kwargs["artifact_path"] = "model"
    return mlflow.sklearn.log_model(
        model,
        signature=infer_signature(features, model.predict(features)),
        input_example=features.head(2),
        **kwargs,
    )


def test_seed_scenarios_are_mirrored_and_verify_finds_no_difference(dual_env, capsys):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    bridge = spark_aml_bridge.connect()
    assert bridge.mode == "dual" and bridge.tracking_uri.startswith("dual:?primary=")
    assert mlflow.get_tracking_uri() == bridge.tracking_uri
    assert mlflow.get_registry_uri() == bridge.dual.primary_uri
    name = _name("seed")
    experiment_id = mlflow.set_experiment(name).experiment_id
    features, labels = load_iris(return_X_y=True, as_frame=True)

    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"alpha": 0.5, "layers": "3"})
        for step in range(30):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "nan": float("nan")})
        mlflow.set_tags({"team": "ml", "temporary": "yes"})
        MlflowClient().delete_tag(parent.info.run_id, "temporary")
        mlflow.log_dict({"a": 1}, "config/params.json")
        mlflow.log_text("hello", "notes/readme.txt")
        with mlflow.start_run(run_name="autolog", nested=True) as child:
            mlflow.sklearn.autolog(log_models=False, silent=True)
            try:
                LogisticRegression(C=0.7, max_iter=300).fit(features, labels)
            finally:
                mlflow.sklearn.autolog(disable=True)
        with mlflow.start_run(run_name="model", nested=True) as modelled:
            info = _log_model(features, labels)
            mlflow.log_input(mlflow.data.from_pandas(features, name="iris"), context="training")

    assert bridge.dual.flush(120), bridge.dual.status()
    status = bridge.dual.status()
    assert status["dead_letters"] == 0 and status["pending_ops"] == 0

    code, out = _verify(capsys, "--experiment-id", experiment_id)
    assert code == 0, out
    assert "no difference" in out

    # User code saw the primary's ids; both sides record the other's.
    primary = MlflowClient(bridge.dual.primary_uri)
    assert primary.get_run(parent.info.run_id).info.run_name == "parent"
    mirror_parent = _mirror_run(bridge, parent.info.run_id)
    assert mirror_parent.info.run_id != parent.info.run_id
    assert mirror_parent.data.tags[PRIMARY_RUN_TAG] == parent.info.run_id
    assert (
        mirror_parent.data.tags[ORIGIN_TAG]
        == primary.get_run(parent.info.run_id).data.tags[ORIGIN_TAG]
    )
    assert "temporary" not in mirror_parent.data.tags
    mirror_child = _mirror_run(bridge, child.info.run_id)
    assert mirror_child.data.tags["mlflow.parentRunId"] == mirror_parent.info.run_id
    assert mirror_child.data.params["C"] == "0.7"
    mirror_client = MlflowClient(bridge.dual.mirror_uri)
    mirror_experiment = mirror_client.get_experiment(mirror_parent.info.experiment_id)
    assert mirror_experiment.name == name.rsplit("/", 1)[1]
    assert mirror_experiment.tags[PRIMARY_EXPERIMENT_TAG] == experiment_id
    history = mirror_client.get_metric_history(mirror_parent.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(30))
    # The model is loadable from the mirror too.
    mirror_model = _mirror_run(bridge, modelled.info.run_id)
    if MLFLOW_3:
        mirror_model_id = MlflowClient(bridge.dual.primary_uri).get_logged_model(info.model_id)
        mirrored = mirror_model_id.tags.get("spark_aml_bridge.mirror.model_id")
        assert mirrored
        uri = f"models:/{mirrored}"
    else:
        uri = f"runs:/{mirror_model.info.run_id}/model"
    mlflow.set_tracking_uri(bridge.dual.mirror_uri)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(bridge.tracking_uri)
    assert list(loaded.predict(features.head(3))) == list(
        mlflow.pyfunc.load_model(info.model_uri).predict(features.head(3))
    )


def test_async_logging_keeps_working_and_is_mirrored(dual_env, capsys):
    spark_aml_bridge.connect()
    experiment_id = mlflow.set_experiment(_name("async")).experiment_id
    with mlflow.start_run() as run:
        for step in range(40):
            mlflow.log_metric("m", step * 0.5, step=step, synchronous=False)
        mlflow.log_param("p", "1", synchronous=False)
        mlflow.set_tag("t", "x", synchronous=False)
        mlflow.flush_async_logging()
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.metrics["m"] == 19.5 and data.params == {"p": "1"}
    assert spark_aml_bridge.current().dual.flush(120)
    code, out = _verify(capsys, "--experiment-id", experiment_id)
    assert code == 0, out


def test_backfill_copies_existing_runs_incrementally(dual_env, dual_primary, capsys):
    primary_uri, _ = dual_primary
    client = MlflowClient(primary_uri)  # runs made before any dual tracking
    experiment_id = client.create_experiment(_name("backfill"))
    parent = client.create_run(experiment_id, run_name="old-parent")
    client.log_param(parent.info.run_id, "p", "1")
    for step in range(5):
        client.log_metric(parent.info.run_id, "loss", 1.0 / (step + 1), step=step)
    child = client.create_run(
        experiment_id, tags={"mlflow.parentRunId": parent.info.run_id}, run_name="old-child"
    )
    client.log_text(child.info.run_id, "artifact", "dir/file.txt")
    client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id, "FAILED")

    code, out = _verify(capsys, "--experiment-id", experiment_id)
    assert code == 1 and "missing" in out

    assert main(["mirror", "backfill", "--experiment-id", experiment_id]) == 0
    out = capsys.readouterr().out
    assert "fixed" in out
    code, out = _verify(capsys, "--experiment-id", experiment_id)
    assert code == 0, out

    # New data on the primary: the next backfill copies only that.
    client.log_metric(parent.info.run_id, "loss", 0.01, step=99)
    assert main(["mirror", "backfill", "--run-id", parent.info.run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["field"] for d in report["differences"]] == ["metric loss"]
    assert main(["mirror", "backfill", "--experiment-id", experiment_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["differences"] == []
    mirror = MlflowClient(spark_aml_bridge.connect().dual.mirror_uri)
    mirror_child = mirror.get_run(client.get_run(child.info.run_id).data.tags[MIRROR_RUN_TAG])
    assert (
        mirror_child.data.tags["mlflow.parentRunId"]
        == client.get_run(parent.info.run_id).data.tags[MIRROR_RUN_TAG]
    )
    assert [f.path for f in mirror.list_artifacts(mirror_child.info.run_id, "dir")] == [
        "dir/file.txt"
    ]


def test_lost_mirror_answers_make_no_duplicate_runs_or_points(dual_env, use_emulator, capsys):
    bridge = spark_aml_bridge.connect()
    emulator = use_emulator
    experiment_id = mlflow.set_experiment(_name("lost")).experiment_id
    # The workspace applies these requests, then the answer is lost (503).
    emulator.inject_faults(status=503, count=1, path_contains="runs/create", when="after")
    emulator.inject_faults(status=503, count=2, path_contains="runs/log-batch", when="after")
    with mlflow.start_run() as run:
        for step in range(20):
            mlflow.log_metric("m", float(step), step=step)
    assert bridge.dual.flush(120)
    status = bridge.dual.status()
    assert status["counters"]["metrics_deduplicated"] > 0
    mirror = MlflowClient(bridge.dual.mirror_uri)
    mirror_experiment = _mirror_run(bridge, run.info.run_id).info.experiment_id
    assert len(mirror.search_runs([mirror_experiment])) == 1
    code, out = _verify(capsys, "--experiment-id", experiment_id)
    assert code == 0, out


def test_strict_mode_raises_when_the_mirror_fails_and_catches_up_after(dual_env, use_emulator):
    bridge = spark_aml_bridge.connect(dual_strict=True)
    assert "strict=true" in bridge.tracking_uri
    emulator = use_emulator
    mlflow.set_experiment(_name("strict"))
    with mlflow.start_run() as run:
        mlflow.log_metric("before", 1.0)  # mirrored synchronously
        assert _mirror_run(bridge, run.info.run_id).data.metrics == {"before": 1.0}
        emulator.inject_faults(status=500, count=1, path_contains="runs/log-batch")
        with pytest.raises(mlflow.exceptions.MlflowException, match="strict"):
            mlflow.log_metric("during", 2.0)
        # The primary has it; the next write sends both to the mirror.
        assert MlflowClient().get_run(run.info.run_id).data.metrics["during"] == 2.0
        mlflow.log_metric("after", 3.0)
    assert _mirror_run(bridge, run.info.run_id).data.metrics == {
        "before": 1.0,
        "during": 2.0,
        "after": 3.0,
    }


def test_same_named_experiments_get_distinct_mirror_names(dual_env):
    bridge = spark_aml_bridge.connect()
    leaf = f"same-{uuid.uuid4().hex[:6]}"
    first = mlflow.create_experiment(f"/Users/a@example.com/{leaf}")
    second = mlflow.create_experiment(f"/Users/b@example.com/{leaf}")
    for experiment_id in (first, second):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("e", experiment_id)
    assert bridge.dual.flush(120)
    mirror = MlflowClient(bridge.dual.mirror_uri)
    names = {
        e.tags.get(PRIMARY_EXPERIMENT_TAG): e.name
        for e in mirror.search_experiments(filter_string=f"name LIKE '{leaf}%'")
    }
    assert names == {first: leaf, second: f"{leaf}-{second}"}
    assert run.info.experiment_id == second


def test_status_lists_the_spool_and_its_size(dual_env, capsys):
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(_name("status"))
    with mlflow.start_run():
        mlflow.log_metric("m", 1.0)
    assert bridge.dual.flush(60)
    assert main(["mirror", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (mine,) = [s for s in info["spools"] if s["owner_alive"]]
    assert mine["pending_ops"] == 0 and mine["size_bytes"] > 0
    assert mine["counters"]["metrics_sent"] >= 1 and mine["peak_size_bytes"] >= 0
    assert main(["mirror", "status"]) == 0
    assert "pending: 0 writes" in capsys.readouterr().out


def test_registrations_are_mirrored_when_asked(dual_env):
    from sklearn.datasets import load_iris

    bridge = spark_aml_bridge.connect(dual_mirror_registry=True)
    assert mlflow.get_registry_uri() == bridge.tracking_uri
    mlflow.set_experiment(_name("registry"))
    features, labels = load_iris(return_X_y=True, as_frame=True)
    name = f"iris-{uuid.uuid4().hex[:6]}"
    with mlflow.start_run():
        info = _log_model(features, labels)
        version = mlflow.register_model(info.model_uri, name)
    client = MlflowClient()
    # (The Databricks workspace registry has no aliases: tags and descriptions it has.)
    client.set_model_version_tag(name, version.version, "validated", "yes")
    client.update_model_version(name, version.version, "the first one")
    client.set_registered_model_tag(name, "owner", "team")
    assert bridge.dual.flush(120), bridge.dual.status()
    assert bridge.dual.status()["dead_letters"] == 0, bridge.dual.status()

    mirror = MlflowClient(bridge.dual.mirror_uri, registry_uri=bridge.dual.mirror_uri)
    (mirrored,) = mirror.search_model_versions(f"name = '{name}'")
    assert mirrored.tags["spark_aml_bridge.primary.version"] == str(version.version)
    assert mirrored.tags["validated"] == "yes" and mirrored.description == "the first one"
    assert mirror.get_registered_model(name).tags == {"owner": "team"}
    mlflow.set_tracking_uri(bridge.dual.mirror_uri)
    mlflow.set_registry_uri(bridge.dual.mirror_uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{mirrored.version}")
    finally:
        mlflow.set_tracking_uri(bridge.tracking_uri)
        mlflow.set_registry_uri(bridge.registry_uri)
    assert len(loaded.predict(features.head(3))) == 3


def test_native_primary_on_a_platform_without_one_names_the_fix(use_emulator):
    from spark_aml_bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="dual_primary") as info:
        spark_aml_bridge.connect(mode="dual")
    assert "no MLflow tracking of its own" in str(info.value)
    assert spark_aml_bridge.current() is None


def test_the_next_connect_replays_what_an_earlier_process_left(dual_env, use_emulator, capsys):
    import time

    from spark_aml_bridge.dual.api import status
    from spark_aml_bridge.dual.worker import close_all

    spark_aml_bridge.connect()
    experiment_id = mlflow.set_experiment(_name("leftover")).experiment_id
    use_emulator.inject_faults(status=503, count=100_000, path_contains="runs/log-batch")
    with mlflow.start_run():
        for step in range(20):
            mlflow.log_metric("m", float(step), step=step)
    close_all(timeout=0.5)  # as at exit: a bounded flush, the rest stays in the spool
    spool_dir = dual_env["SPARK_AML_BRIDGE_DUAL_SPOOL_DIR"]
    (left,) = status(spool_dir)["spools"]
    assert left["pending_ops"] > 0 and not left["owner_alive"]
    use_emulator.reset()
    spark_aml_bridge.disconnect()

    spark_aml_bridge.connect()  # a new link: it replays the spool left behind
    deadline = time.monotonic() + 60
    while left["spool"] in {s["spool"] for s in status(spool_dir)["spools"]}:
        assert time.monotonic() < deadline, status(spool_dir)
        time.sleep(0.2)
    assert main(["mirror", "verify", "--experiment-id", experiment_id]) == 0, capsys.readouterr()
