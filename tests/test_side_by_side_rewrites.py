"""Autologging that rewrites a run artifact runs unchanged and loses nothing (write-once AML).

XGBClassifier with both ``mlflow.sklearn.autolog()`` and ``mlflow.xgboost.autolog()`` in one
run rewrites ``metric_info.json`` (post-training metrics); on a plain MLflow server the newest
content wins. Through the bridge the same run must read the same, newest, content.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import spark_aml_bridge


def _autologged_run(tmp: Path) -> dict:
    from xgboost import XGBClassifier

    features, labels = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(features, labels, random_state=0)
    mlflow.set_experiment(f"rewrites-{uuid.uuid4().hex[:8]}")
    mlflow.sklearn.autolog(log_input_examples=False, silent=False)
    mlflow.xgboost.autolog(log_input_examples=False, silent=False)
    try:
        with mlflow.start_run() as run:
            model = XGBClassifier(n_estimators=8, max_depth=3, random_state=0)
            model.fit(x_train, y_train, eval_set=[(x_test, y_test)], verbose=False)
            model.score(x_test, y_test)  # post-training metric: metric_info.json is rewritten
            model.score(x_train, y_train)
    finally:
        mlflow.sklearn.autolog(disable=True)
        mlflow.xgboost.autolog(disable=True)
    client = MlflowClient()
    tmp.mkdir(parents=True)
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp)))
    # MLflow 3 servers keep the autologged model outside the run, the bridge inside it.
    folders = {p.parent for p in local.rglob("MLmodel")}
    files = sorted(
        str(p.relative_to(local))
        for p in local.rglob("*")
        if p.is_file() and not any(f in p.parents for f in folders)
    )
    info = json.loads((local / "metric_info.json").read_text())
    metrics = client.get_run(run.info.run_id).data.metrics
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    return {
        "files": files,
        "metric_info": sorted(info),
        "metrics": sorted(metrics),
        "predicts": len(loaded.predict(x_test.head(5))),
    }


def test_autolog_rewrites_read_as_on_a_plain_server(
    plain_mlflow_server, use_emulator, tmp_path, caplog
):
    mlflow.set_tracking_uri(plain_mlflow_server)
    try:
        reference = _autologged_run(tmp_path / "plain")
    finally:
        mlflow.set_tracking_uri(None)
    spark_aml_bridge.connect()
    with caplog.at_level(logging.WARNING):
        bridged = _autologged_run(tmp_path / "bridge")
    assert bridged == reference
    assert len(reference["metric_info"]) >= 2
    assert not [r for r in caplog.records if "write-once" in r.getMessage()]
