from __future__ import annotations

import pytest

from spark_aml_bridge.config import SETTINGS, SETTINGS_BY_NAME, BridgeConfig, resolve_config
from spark_aml_bridge.errors import ConfigError


def test_every_setting_has_env_and_conf_names():
    for setting in SETTINGS:
        assert setting.env == "SPARK_AML_BRIDGE_" + setting.name.upper()
        assert setting.conf_key.startswith("spark.aml.bridge.")
        assert "_" not in setting.conf_key


def test_precedence_argument_env_conf_default():
    env = {"SPARK_AML_BRIDGE_CLOUD": "AzureChinaCloud", "SPARK_AML_BRIDGE_REGION": "env-region"}
    conf = {
        "spark.aml.bridge.region": "conf-region",
        "spark.aml.bridge.workspaceName": "conf-ws",
    }
    config = resolve_config({"region": "arg-region"}, env=env, spark_conf=conf)
    assert config.region == "arg-region" and config.source("region") == "argument"
    assert config.cloud == "AzureChinaCloud" and "env" in config.source("cloud")
    assert config.workspace_name == "conf-ws" and "Spark conf" in config.source("workspace_name")
    assert config.mode == "workspace" and config.source("mode") == "default"
    assert config.executors is True


def test_platform_defaults_rank_below_conf():
    config = resolve_config(
        {}, env={}, spark_conf={"spark.aml.bridge.region": "c"}, platform_defaults={"region": "p"}
    )
    assert config.region == "c"
    config = resolve_config({}, env={}, spark_conf={}, platform_defaults={"region": "p"})
    assert config.region == "p" and config.source("region") == "platform default"


def test_secret_in_spark_conf_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        resolve_config({}, env={}, spark_conf={"spark.aml.bridge.clientSecret": "s3cr3t-value"})
    message = str(info.value)
    assert "spark.aml.bridge.clientSecret" in message and "Spark UI" in message
    assert "SPARK_AML_BRIDGE_CLIENT_SECRET" in message
    assert "s3cr3t-value" not in message


def test_unknown_argument_and_conf_key_are_named():
    with pytest.raises(ConfigError, match="workspce"):
        resolve_config({"workspce": "x"}, env={}, spark_conf={})
    with pytest.raises(ConfigError, match=r"spark\.aml\.bridge\.workspce"):
        resolve_config({}, env={}, spark_conf={"spark.aml.bridge.workspce": "x"})


def test_bad_values_name_the_setting_and_fix():
    with pytest.raises(ConfigError) as info:
        resolve_config({}, env={"SPARK_AML_BRIDGE_EXECUTORS": "maybe"}, spark_conf={})
    assert "executors" in str(info.value) and "SPARK_AML_BRIDGE_EXECUTORS" in str(info.value)
    with pytest.raises(ConfigError, match="one of: workspace"):
        resolve_config({"mode": "sideways"}, env={}, spark_conf={})


def test_env_and_conf_export_never_carry_secrets():
    config = resolve_config(
        {"client_secret": "s3cr3t-value", "workspace_name": "ws", "region": "westeurope"},
        env={},
        spark_conf={},
    )
    env = config.to_env()
    assert env == {
        "SPARK_AML_BRIDGE_WORKSPACE_NAME": "ws",
        "SPARK_AML_BRIDGE_REGION": "westeurope",
    }
    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" not in str(config.to_spark_conf())
    assert config.to_spark_conf()["spark.aml.bridge.workspaceName"] == "ws"
    # Round trip: what we export resolves back to the same values.
    again = resolve_config({}, env=env, spark_conf={})
    assert again.workspace_name == "ws" and again.region == "westeurope"


def test_settings_read_as_their_declared_types():
    env = {
        "SPARK_AML_BRIDGE_DUAL_SPOOL_MAX_MB": "512",
        "SPARK_AML_BRIDGE_DUAL_STRICT": "yes",
        "SPARK_AML_BRIDGE_SEARCH_MAX_CLIENT_SIDE_RUNS": "7",
    }
    config = resolve_config({}, env=env, spark_conf={})
    assert type(config.dual_spool_max_mb) is float and config.dual_spool_max_mb == 512.0
    assert config.dual_strict is True and config.durable_writes is False
    assert (
        type(config.search_max_client_side_runs) is int and config.search_max_client_side_runs == 7
    )
    assert config.mode == "workspace" and config.region is None
    # The class attribute is the declaration: one table, read by name on a resolved config.
    assert BridgeConfig.mode is SETTINGS_BY_NAME["mode"] and BridgeConfig.mode.env == (
        "SPARK_AML_BRIDGE_MODE"
    )
    with pytest.raises(AttributeError, match="read-only"):
        config.mode = "dual"
    assert config.replace(mode="dual").mode == "dual" and config.mode == "workspace"
    with pytest.raises(TypeError, match="mdoe"):
        config.replace(mdoe="dual")
