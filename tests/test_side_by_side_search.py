"""Run searches Azure ML refuses are answered anyway, exactly as a plain MLflow server answers.

The same runs are logged to a plain `mlflow server` and, through the bridge, to the workspace
(which refuses LIKE/ILIKE and ordering by metrics, params or tags); the same searches must give
the same runs in the same order, the same pages and the same errors.
"""

from __future__ import annotations

import uuid
from typing import Any

import mlflow
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import spark_aml_bridge

QUERIES: list[dict[str, Any]] = [
    {"order_by": ["metrics.loss ASC"], "max_results": 1},
    {"order_by": ["metrics.loss DESC"], "max_results": 5},
    {"order_by": ["params.lr DESC", "metrics.loss ASC"]},
    {"order_by": ["tags.team ASC", "attributes.start_time DESC"]},
    {"filter_string": "params.model LIKE 'xgb%'"},
    {"filter_string": "tags.team ILIKE '%A%'", "order_by": ["metrics.acc DESC"]},
    {"filter_string": "attributes.run_name LIKE 'run-1%'"},
    {"filter_string": "metrics.loss < 0.5 AND params.model LIKE '%forest'"},
    {"filter_string": "metrics.loss < 0.5 AND params.model = 'xgb'"},
    {"filter_string": "metrics.acc >= 0.7", "order_by": ["metrics.acc ASC"], "max_results": 3},
    {"filter_string": "params.model = 'xgb' OR params.model = 'forest'"},
    {"filter_string": "metrics.loss LIKE '1'"},
    {"order_by": ["metrics.`no such` ASC"], "max_results": 4},
    {"filter_string": "params.lr != '0.1'", "order_by": ["params.lr ASC"]},
]


def _log_runs(client: MlflowClient, experiment_id: str) -> None:
    models = ["xgb", "forest", "linear", "xgboost-hist"]
    for i in range(24):
        run = client.create_run(
            experiment_id, start_time=1_700_000_000_000 + i * 1000, run_name=f"run-{i}"
        )
        metrics = [Metric("loss", round(1.0 / (1 + (i * 7) % 24), 4), 0, 0)]
        if i % 5:
            metrics.append(Metric("acc", round(0.5 + (i % 9) / 20, 3), 0, 0))
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param("model", models[i % 4]), Param("lr", str([0.1, 0.01, 0.3][i % 3]))],
            tags=[RunTag("team", ["A", "b", "Alpha"][i % 3])],
        )
        client.set_terminated(run.info.run_id)


def _answers(client: MlflowClient, experiment_id: str) -> list:
    answers = []
    for query in QUERIES:
        try:
            page = client.search_runs([experiment_id], **query)
            answers.append([r.info.run_name for r in page])
        except MlflowException as exc:
            answers.append(("error", exc.error_code, exc.message))
    # Paging through everything ordered by a metric, 7 at a time.
    names, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], order_by=["metrics.loss ASC"], max_results=7, page_token=token
        )
        names.append([r.info.run_name for r in page])
        token = page.token
        if not token:
            break
    answers.append(names)
    frame = mlflow.search_runs([experiment_id], order_by=["metrics.acc DESC"], max_results=4)
    answers.append(list(frame["tags.mlflow.runName"]))
    return answers


@pytest.fixture(scope="module")
def reference(plain_mlflow_server):
    client = MlflowClient(plain_mlflow_server)
    experiment_id = client.create_experiment(f"search-{uuid.uuid4().hex[:8]}")
    _log_runs(client, experiment_id)
    mlflow.set_tracking_uri(plain_mlflow_server)
    try:
        return _answers(client, experiment_id)
    finally:
        mlflow.set_tracking_uri(None)


def test_searches_azure_ml_refuses_answer_as_mlflow(reference, use_emulator):
    spark_aml_bridge.connect()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"search-{uuid.uuid4().hex[:8]}")
    _log_runs(client, experiment_id)
    bridged = _answers(client, experiment_id)
    labels = [str(q) for q in QUERIES] + ["paging", "search_runs frame"]
    differences = [
        f"{label}: plain server {want!r}, bridge {got!r}"
        for label, want, got in zip(labels, reference, bridged, strict=True)
        if want != got
    ]
    assert not differences, "\n".join(differences)


def test_a_client_side_search_is_bounded_with_a_clear_error(use_emulator, monkeypatch):
    monkeypatch.setenv("SPARK_AML_BRIDGE_SEARCH_MAX_CLIENT_SIDE_RUNS", "5")
    spark_aml_bridge.connect()
    client = MlflowClient()
    experiment_id = client.create_experiment(f"bound-{uuid.uuid4().hex[:8]}")
    for i in range(7):
        client.create_run(experiment_id, run_name=f"r{i}")
    # What the workspace evaluates itself is not bounded.
    assert len(client.search_runs([experiment_id], order_by=["start_time DESC"])) == 7
    with pytest.raises(MlflowException) as raised:
        client.search_runs([experiment_id], order_by=["metrics.loss ASC"], max_results=1)
    message = str(raised.value)
    assert "more than 5 runs" in message and "Narrow it with a filter" in message
    assert "SPARK_AML_BRIDGE_SEARCH_MAX_CLIENT_SIDE_RUNS" in message
