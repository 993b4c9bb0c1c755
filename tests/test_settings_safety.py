"""Settings refuse what would go wrong later: non-numbers, absurd lengths, secrets inside URIs."""

from __future__ import annotations

import pytest

import spark_aml_bridge
from spark_aml_bridge.config import resolve_config
from spark_aml_bridge.errors import ConfigError


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "-5", "NaN"])
def test_numbers_are_finite_and_not_negative(raw):
    with pytest.raises(ConfigError) as info:
        resolve_config({}, env={"SPARK_AML_BRIDGE_TOKEN_REFRESH_MARGIN": raw}, spark_conf={})
    assert "token_refresh_margin" in str(info.value) and "Fix:" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_numbers_given_as_arguments_are_checked_too(value):
    with pytest.raises(ConfigError):
        resolve_config({"token_refresh_margin": value}, env={}, spark_conf={})
    with pytest.raises(ConfigError):
        spark_aml_bridge.connect(
            workspace="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/"
            "providers/Microsoft.MachineLearningServices/workspaces/ws1",
            dual_exit_flush_seconds=value,
        )


@pytest.mark.parametrize("name", ["workspace_name", "workspace", "dual_mirror"])
def test_an_absurdly_long_value_gets_a_short_error(name):
    with pytest.raises(ConfigError) as info:
        resolve_config({name: "w" * 100_000}, env={}, spark_conf={})
    assert len(str(info.value)) < 600 and "100,000 characters" in str(info.value)


def test_a_long_workspace_name_in_parts_gets_a_short_error():
    from spark_aml_bridge.workspace import workspace_from_parts

    with pytest.raises(ConfigError) as info:
        workspace_from_parts("00000000-0000-0000-0000-000000000000", "rg", "w" * 5000)
    assert len(str(info.value)) < 800


@pytest.mark.parametrize(
    "name, uri",
    [
        ("dual_mirror", "https://alice:s3cr3t-pw@mlflow.example.com/"),
        ("dual_primary", "http://token-s3cr3t-pw@mlflow.example.com:5000"),
        ("workspace", "azureml://u:s3cr3t-pw@westeurope.api.azureml.ms/mlflow/v1.0/x"),
        ("arm_endpoint", "https://u:s3cr3t-pw@management.azure.com"),
    ],
)
def test_credentials_inside_a_uri_setting_are_refused(name, uri, monkeypatch):
    for source in ("argument", "env"):
        with pytest.raises(ConfigError) as info:
            if source == "argument":
                resolve_config({name: uri}, env={}, spark_conf={})
            else:
                resolve_config({}, env={f"SPARK_AML_BRIDGE_{name.upper()}": uri}, spark_conf={})
        text = str(info.value)
        assert "s3cr3t-pw" not in text and name in text and "MLFLOW_TRACKING_PASSWORD" in text


def test_credentials_in_a_uri_never_reach_init_scripts_or_pool_configuration():
    from spark_aml_bridge.platforms.databricks.initscript import databricks_cluster_env
    from spark_aml_bridge.platforms.synapse.pool_config import config_from_settings

    settings = {
        "workspace": "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/"
        "00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws1",
        "mode": "dual",
        "dual_primary": "https://alice:s3cr3t-pw@mlflow.example.com/",
    }
    with pytest.raises(ConfigError) as info:
        databricks_cluster_env(settings)
    assert "s3cr3t-pw" not in str(info.value)
    with pytest.raises(ConfigError):
        config_from_settings(settings)
