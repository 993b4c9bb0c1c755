"""Which run searches go to the workspace and which are answered client side (azureml/search.py);
model ids that name their home run, whatever the workspace's run ids look like."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from spark_aml_bridge.azureml.run_models import home_run_of, model_id_in_run
from spark_aml_bridge.azureml.search import plan_search


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [
        (None, None),
        ("metrics.loss < 0.5 AND params.model = 'xgb'", ["start_time DESC"]),
        ("tags.team = 'A' AND params.lr != '0.1'", ["attributes.end_time ASC"]),
    ],
)
def test_what_azure_ml_accepts_goes_to_the_workspace(filter_string, order_by):
    plan = plan_search(filter_string, order_by)
    assert plan.server_side and plan.pushdown == (filter_string or "")


@pytest.mark.parametrize(
    ("filter_string", "order_by", "pushdown"),
    [
        (None, ["metrics.loss ASC"], ""),
        ("params.model LIKE 'xgb%'", None, ""),
        (
            "metrics.loss < 0.5 AND tags.team ILIKE '%a%' AND params.model = 'xgb'",
            None,
            "metrics.`loss` < 0.5 AND params.`model` = 'xgb'",
        ),
        ("tags.team != 'A'", None, ""),
        ("attributes.run_name = 'r1' AND metrics.acc >= 1", ["params.lr"], "metrics.`acc` >= 1.0"),
    ],
)
def test_what_azure_ml_refuses_is_split(filter_string, order_by, pushdown):
    plan = plan_search(filter_string, order_by)
    assert not plan.server_side and plan.pushdown == pushdown


def test_what_mlflow_refuses_fails_with_mlflows_error():
    with pytest.raises(MlflowException) as raised:
        plan_search("params.a = 'x' OR params.a = 'y'", None)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Invalid clause(s) in filter string" in raised.value.message


@pytest.mark.parametrize(
    "run_id", ["0a1b2c3d4e5f60718293a4b5c6d7e8f9", "6f1c8a3e-2b7d-4e0a-9c51-3d2e8f7a6b10"]
)
def test_model_ids_name_their_home_run(run_id):
    model_id = model_id_in_run(run_id, "1a2b3c4d5e6f")
    assert model_id.startswith("m-") and home_run_of(model_id) == run_id
    assert home_run_of(f"m-{run_id.replace('-', '')}") is None  # models of earlier versions
