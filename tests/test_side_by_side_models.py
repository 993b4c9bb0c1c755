"""MLflow 3's logged-model API through the bridge answers as a plain MLflow server does.

The same calls run against a plain `mlflow server` and against the workspace (which has no
logged-model API: the bridge keeps models client side); the transcripts, with ids replaced by
placeholders, must be equal — results and error messages alike.
"""

from __future__ import annotations

import uuid
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import spark_aml_bridge

pytestmark = pytest.mark.skipif(
    int(mlflow.__version__.split(".")[0]) < 3, reason="logged models exist only in MLflow 3"
)


class Transcript:
    def __init__(self) -> None:
        self.lines: list[tuple[str, Any]] = []
        self.ids: dict[str, str] = {}
        self.experiment_id = ""

    def alias(self, value: str, kind: str) -> str:
        # Short ids (a plain server's experiment "1") are compared by equality, not replaced.
        if len(value) < 8:
            return value
        return self.ids.setdefault(value, f"<{kind}{len(self.ids)}>")

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for real, alias in sorted(self.ids.items(), key=lambda kv: -len(kv[0])):
                value = value.replace(real, alias)
            return value
        if isinstance(value, (list, tuple)):
            return [self.clean(v) for v in value]
        if isinstance(value, dict):
            return {self.clean(k): self.clean(v) for k, v in sorted(value.items())}
        return value

    def record(self, step: str, call: Any) -> Any:
        try:
            result = call()
        except MlflowException as exc:
            self.lines.append((step, ("error", exc.error_code, self.clean(exc.message))))
            return None
        return result

    def add(self, step: str, value: Any) -> None:
        self.lines.append((step, self.clean(value)))


def _model_view(t: Transcript, model: Any) -> dict:
    return {
        "name": model.name,
        "in_experiment": model.experiment_id == t.experiment_id,
        "source_run_id": model.source_run_id,
        "status": str(model.status),
        "model_type": model.model_type,
        "params": model.params,
        # MLflow's context tags are the same on both sides; the bridge's platform tags are not.
        "tags": {k: v for k, v in model.tags.items() if not k.startswith("spark_aml_bridge.")},
        "metrics": sorted(
            (
                m.key,
                m.value,
                m.step,
                m.dataset_name,
                m.dataset_digest,
                m.run_id,
                m.model_id,
            )
            for m in model.metrics
        ),
    }


def _story() -> list:
    t = Transcript()
    client = MlflowClient()
    experiment = mlflow.set_experiment(f"side-{uuid.uuid4().hex[:8]}")
    t.experiment_id = experiment.experiment_id
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=200).fit(features, labels)
    dataset = mlflow.data.from_pandas(pd.concat([features, labels], axis=1), name="iris-eval")
    with mlflow.start_run() as run:
        t.alias(run.info.run_id, "run")
        mlflow.log_param("C", "1.0")
        info = mlflow.sklearn.log_model(
            model, name="model", params={"extra": "x"}, serialization_format="cloudpickle"
        )
        t.alias(info.model_id, "model")
        mlflow.log_metric("acc", 0.9, step=1, model_id=info.model_id, dataset=dataset)
        mlflow.log_metric("loss", 0.3, model_id=info.model_id)
    outside = client.create_logged_model(experiment.experiment_id, name="outside")
    t.alias(outside.model_id, "model")
    t.add("outside.created", _model_view(t, outside))
    t.add("model", _model_view(t, client.get_logged_model(info.model_id)))
    outputs = client.get_run(run.info.run_id).outputs
    t.add("run.outputs", [(o.model_id, o.step) for o in outputs.model_outputs])

    def names(**kwargs: Any) -> list:
        page = client.search_logged_models(experiment_ids=[experiment.experiment_id], **kwargs)
        return [m.name for m in page]

    t.add("search.name", names(filter_string="name = 'model'"))
    t.add("search.like", names(filter_string="name LIKE 'mod%'"))
    digest = dataset.digest
    on_eval = [{"dataset_name": "iris-eval", "dataset_digest": digest}]
    t.add("search.datasets", names(datasets=on_eval))
    t.add("search.datasets.other", names(datasets=[{"dataset_name": "other"}]))
    t.add(
        "search.datasets.metric",
        names(
            filter_string="metrics.acc >= 0.9",
            datasets=on_eval,
        ),
    )
    t.add("search.metric", names(filter_string="metrics.acc > 0.5"))
    t.add("search.param", names(filter_string="params.C = '1.0'"))
    t.add("search.order", names(order_by=[{"field_name": "name", "ascending": True}]))
    t.add(
        "search.order.creation",
        names(order_by=[{"field_name": "creation_timestamp", "ascending": False}]),
    )
    first = client.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        max_results=1,
        order_by=[{"field_name": "name", "ascending": True}],
    )
    rest = client.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        max_results=1,
        order_by=[{"field_name": "name", "ascending": True}],
        page_token=first.token,
    )
    t.add("search.pages", [[m.name for m in first], [m.name for m in rest], rest.token])

    client.set_logged_model_tags(info.model_id, {"stage": "dev", "owner": "me"})
    client.delete_logged_model_tag(info.model_id, "owner")
    t.add("tags", _model_view(t, client.get_logged_model(info.model_id))["tags"])
    t.record("delete_missing_tag", lambda: client.delete_logged_model_tag(info.model_id, "nope"))
    t.record(
        "bad_name",
        lambda: client.create_logged_model(experiment.experiment_id, name="model/path/0"),
    )
    t.record("unknown_id", lambda: client.get_logged_model("m-0123456789abcdef0123456789abcdef"))
    t.add("params.log", None)
    client.log_model_params(outside.model_id, {"alpha": "0.1"})
    t.add("outside.params", client.get_logged_model(outside.model_id).params)
    finalized = client.finalize_logged_model(outside.model_id, "FAILED")
    t.add("outside.finalized", str(finalized.status))

    registered = f"side-{uuid.uuid4().hex[:6]}"
    t.alias(registered, "registered")
    client.create_registered_model(registered)
    version = client.create_model_version(
        registered, f"models:/{info.model_id}", run_id=run.info.run_id, model_id=info.model_id
    )
    t.add("version", version.version)
    tags = client.get_logged_model(info.model_id).tags
    t.add("model.versions", tags.get("mlflow.modelVersions"))
    loaded = mlflow.pyfunc.load_model(f"models:/{registered}/{version.version}")
    t.add("registry.predict", [int(x) for x in loaded.predict(features.head(3))])
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    t.add("runs.predict", [int(x) for x in by_run.predict(features.head(3))])
    model_info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    t.add("model_info", [model_info.run_id, model_info.signature is None])

    client.delete_logged_model(outside.model_id)
    t.record("deleted.get", lambda: client.get_logged_model(outside.model_id))
    t.add("after_delete", names())
    return t.lines


def test_logged_models_answer_as_a_plain_mlflow_server(plain_mlflow_server, use_emulator):
    mlflow.set_tracking_uri(plain_mlflow_server)
    mlflow.set_registry_uri(plain_mlflow_server)
    try:
        reference = _story()
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    spark_aml_bridge.connect()
    bridged = _story()
    assert [step for step, _ in bridged] == [step for step, _ in reference]
    differences = [
        f"{step}: plain server {want!r}, bridge {got!r}"
        for (step, want), (_, got) in zip(reference, bridged, strict=True)
        if got != want
    ]
    assert not differences, "\n".join(differences)
