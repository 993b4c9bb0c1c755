"""One address from one set of settings: connect(), init scripts, pool configuration, jobs."""

from __future__ import annotations

import pytest

from spark_aml_bridge.config import resolve_config
from spark_aml_bridge.errors import WorkspaceAddressError
from spark_aml_bridge.workspace import address_from_settings

SUB = "00000000-0000-0000-0000-000000000001"
ARM_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
    "/workspaces/ws1"
)
CHINA = {"cloud": "AzureChinaCloud", "region": "chinaeast2"}


def _config(**settings):
    return resolve_config(settings, env={}, spark_conf={})


@pytest.mark.parametrize(
    "settings",
    [
        {"subscription_id": SUB, "resource_group": "rg", "workspace_name": "ws1", **CHINA},
        {"workspace": ARM_ID, **CHINA},
    ],
)
def test_cloud_and_region_build_the_cloud_s_host(settings):
    address = address_from_settings(_config(**settings))
    assert address.host == "chinaeast2.api.ml.azure.cn"


def test_connect_init_scripts_and_pool_config_agree():
    from spark_aml_bridge.platforms.databricks.initscript import databricks_cluster_env
    from spark_aml_bridge.platforms.synapse.pool_config import synapse_pool_configuration
    from spark_aml_bridge.session import address_from_config

    settings = {"subscription_id": SUB, "resource_group": "rg", "workspace_name": "ws1", **CHINA}
    expected = f"azureml://chinaeast2.api.ml.azure.cn/mlflow/v1.0{ARM_ID}"
    assert address_from_config(_config(**settings)).tracking_uri() == expected
    assert expected in str(databricks_cluster_env(settings))
    assert expected in str(synapse_pool_configuration(_config(**settings)).spark_conf)


def test_the_arm_host_given_as_the_workspace_says_so():
    with pytest.raises(WorkspaceAddressError) as info:
        address_from_settings(_config(workspace=f"https://management.azure.com{ARM_ID}"))
    assert "Azure Resource Manager" in str(info.value) and "ARM id alone" in str(info.value)
