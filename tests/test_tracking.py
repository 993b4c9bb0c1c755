"""Unchanged MLflow code through connect(), against the emulator over real HTTPS."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.azureml.tracking_store import CREATE_KEY_TAG


def _experiment(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_connect_reports_platform_workspace_identity_and_mode(use_emulator):
    info = use_emulator.info
    bridge = spark_aml_bridge.connect()
    text = repr(bridge)
    assert "generic" in text and info["workspace_name"] in text and "mode=workspace" in text
    assert "app " + info["client_id"][:8] in text
    assert info["client_secret"] not in text
    assert mlflow.get_tracking_uri() == bridge.tracking_uri
    assert bridge.tracking_uri.startswith("azureml://127.0.0.1:")
    assert spark_aml_bridge.current() is bridge
    assert spark_aml_bridge.connect() is bridge  # idempotent


def test_fluent_api_end_to_end(use_emulator):
    spark_aml_bridge.connect()
    name = _experiment("fluent")
    experiment_id = mlflow.set_experiment(name).experiment_id
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_params({"beta": "x", "gamma": 3})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
        mlflow.set_tag("team", "ml")
        mlflow.set_tags({"stage": "dev"})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 42)
    client = MlflowClient()
    run = client.get_run(parent.info.run_id)
    assert run.data.params == {"alpha": "0.5", "beta": "x", "gamma": "3"}
    assert run.data.metrics["loss"] == pytest.approx(0.2)
    assert run.data.tags["team"] == "ml" and run.data.tags["stage"] == "dev"
    assert run.data.tags["spark_aml_bridge.platform"] == "generic"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    found = mlflow.search_runs([experiment_id], filter_string="params.alpha = '0.5'")
    assert list(found["run_id"]) == [parent.info.run_id]
    found = mlflow.search_runs([experiment_id], filter_string="metrics.child_metric > 10")
    assert list(found["run_id"]) == [child.info.run_id]


def test_sklearn_autolog_records_params_and_metrics(use_emulator):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    spark_aml_bridge.connect()
    mlflow.set_experiment(_experiment("autolog"))
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        features, labels = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            LogisticRegression(C=0.7, max_iter=300).fit(features, labels)
    finally:
        mlflow.sklearn.autolog(disable=True)
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.params["C"] == "0.7" and data.params["max_iter"] == "300"
    assert 0.8 < data.metrics["training_accuracy_score"] <= 1.0
    assert "training_f1_score" in data.metrics


def test_tokens_are_refreshed_across_lifetimes_not_per_call(short_token_emulator, monkeypatch):
    for name, value in short_token_emulator.info["env"].items():
        monkeypatch.setenv(name, value)
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment(_experiment("lifetimes"))
    short_token_emulator.reset_stats()
    lifetime = short_token_emulator.info["token_lifetime"]
    calls = 0
    started = time.time()
    with mlflow.start_run():
        while time.time() - started < 4 * lifetime:
            mlflow.log_metric("m", calls, step=calls)
            calls += 1
    elapsed = time.time() - started
    stats = short_token_emulator.stats()
    token_requests = stats["token_requests"]["total"]
    assert stats["auth_failures"] == 0
    assert calls > 50
    # About one token per (lifetime minus the refresh margin), never one per call.
    assert elapsed / lifetime * 0.75 <= token_requests <= elapsed / lifetime * 2 + 1
    assert bridge.session.tokens.requests >= token_requests - 1


def test_revoked_token_is_refreshed_once_and_the_call_succeeds(use_emulator):
    spark_aml_bridge.connect()
    mlflow.set_experiment(_experiment("revoke"))
    with mlflow.start_run() as run:
        mlflow.log_metric("before", 1)
        use_emulator.reset_stats()
        use_emulator.revoke_tokens()
        mlflow.log_metric("after", 2)
    stats = use_emulator.stats()
    assert stats["auth_failures"] == 1
    assert stats["token_requests"]["total"] == 1
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {"before": 1, "after": 2}


def test_throttling_and_unavailability_are_survived(use_emulator):
    spark_aml_bridge.connect()
    experiment_id = mlflow.set_experiment(_experiment("faults")).experiment_id
    use_emulator.inject_faults(status=429, count=2, retry_after=1, when="before")
    with mlflow.start_run() as run:
        use_emulator.inject_faults(status=503, count=2, retry_after=1, when="before")
        mlflow.log_metric("m", 1.0)
        use_emulator.inject_faults(status=429, count=1, retry_after=0, path_contains="log-batch")
        mlflow.log_params({"a": 1, "b": 2})
    runs = MlflowClient().search_runs([experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].data.metrics == {"m": 1.0} and runs[0].data.params == {"a": "1", "b": "2"}


def test_a_create_whose_answer_was_lost_is_not_made_twice(use_emulator):
    spark_aml_bridge.connect()
    name = _experiment("lost-answer")
    use_emulator.inject_faults(
        status=503, count=1, retry_after=0, path_contains="experiments/create", when="after"
    )
    experiment_id = mlflow.set_experiment(name).experiment_id
    use_emulator.inject_faults(
        status=503, count=1, retry_after=0, path_contains="runs/create", when="after"
    )
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0, step=0)
    client = MlflowClient()
    runs = client.search_runs([experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].data.tags[CREATE_KEY_TAG]
    assert [e.name for e in client.search_experiments() if e.name == name] == [name]


def test_disconnect_restores_tracking_uri_and_env(use_emulator, tmp_path, monkeypatch):
    local = f"file://{tmp_path}/mlruns"
    mlflow.set_tracking_uri(local)
    spark_aml_bridge.connect()
    assert mlflow.get_tracking_uri().startswith("azureml://")
    spark_aml_bridge.disconnect()
    assert mlflow.get_tracking_uri() == local
    assert spark_aml_bridge.current() is None
    mlflow.set_tracking_uri(None)
