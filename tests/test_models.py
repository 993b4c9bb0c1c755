"""Models on the workspace: log, load, register — unchanged MLflow code, MLflow 2.x and 3.x."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import spark_aml_bridge

MLFLOW_3 = int(mlflow.__version__.split(".")[0]) >= 3


@pytest.fixture
def iris():
    features, labels = load_iris(return_X_y=True, as_frame=True)
    return features, labels


@pytest.fixture
def connected(use_emulator):
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"models-{uuid.uuid4().hex[:8]}")
    return use_emulator


def _log_sklearn(features, labels, **kwargs):
    model = LogisticRegression(max_iter=300).fit(features, labels)
    signature = infer_signature(features, model.predict(features))
    name_kw = {"name": "model"} if MLFLOW_3 else {"artifact_path": "model"}
    if MLFLOW_3:
        kwargs.setdefault("serialization_format", "cloudpickle")
    info = mlflow.sklearn.log_model(
        model, signature=signature, input_example=features.head(3), **name_kw, **kwargs
    )
    return model, info


def test_sklearn_model_logs_and_loads_every_way(connected, iris):
    features, labels = iris
    with mlflow.start_run() as run:
        model, info = _log_sklearn(features, labels)
    expected = model.predict(features)

    by_info = mlflow.pyfunc.load_model(info.model_uri)
    assert (by_info.predict(features) == expected).all()
    assert by_info.metadata.signature is not None
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert (by_run.predict(features) == expected).all()

    name = f"iris-{uuid.uuid4().hex[:6]}"
    version = mlflow.register_model(info.model_uri, name)
    by_registry = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    assert (by_registry.predict(features) == expected).all()

    client = MlflowClient()
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    client.set_registered_model_alias(name, "champion", version.version)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.set_model_version_tag(name, version.version, "validated", "yes")
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert (champion.predict(features) == expected).all()


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n):
        self.n = n

    def predict(self, context, model_input, params=None):
        return model_input + self.n


def test_pyfunc_model_with_signature_and_example(connected):
    frame = pd.DataFrame({"x": np.arange(5.0)})
    with mlflow.start_run():
        name_kw = {"name": "adder"} if MLFLOW_3 else {"artifact_path": "adder"}
        info = mlflow.pyfunc.log_model(
            python_model=AddN(3),
            signature=infer_signature(frame, frame + 3),
            input_example=frame.head(2),
            **name_kw,
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.predict(frame)["x"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


@pytest.mark.skipif(not MLFLOW_3, reason="logged models exist only in MLflow 3")
def test_logged_model_api_is_provided_client_side(connected, iris):
    features, labels = iris
    with mlflow.start_run() as run:
        _, info = _log_sklearn(features, labels)
        mlflow.log_metric("accuracy", 0.95, model_id=info.model_id)
    client = MlflowClient()
    model = client.get_logged_model(info.model_id)
    assert model.name == "model" and model.source_run_id == run.info.run_id
    assert str(model.status) == "READY"
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string="name = 'model'"
    )
    assert [m.model_id for m in found] == [info.model_id]
    assert {m.key: m.value for m in client.get_logged_model(info.model_id).metrics} == {
        "accuracy": 0.95
    }
    # MLflow 3 lists a run's sub-directories through logged-model search: it must not fail.
    assert client.list_artifacts(run.info.run_id, "model") is not None
    # A model logged in a run lives in that run's artifacts, not in a hidden experiment's run.
    assert model.artifact_location == f"{run.info.artifact_uri}/model"


def test_registry_limits_are_reported_clearly(connected, iris):
    client = MlflowClient()
    name = f"limits-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    with pytest.raises(mlflow.exceptions.MlflowException) as info:
        client.rename_registered_model(name, name + "-renamed")
    assert "does not support renaming" in str(info.value)
