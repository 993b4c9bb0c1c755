"""Databricks detection and context: notebook, job, serverless, shared, executor, DCS, elsewhere."""

from __future__ import annotations

import json
import warnings

import pytest

from spark_aml_bridge.config import resolve_config
from spark_aml_bridge.emulator.databricks.runtime import DatabricksRuntimeDouble
from spark_aml_bridge.platforms import detect_platform
from spark_aml_bridge.platforms.databricks.shim import CONTEXT_ENV, DatabricksPlatform


@pytest.fixture
def runtime(tmp_path):
    """Factory for runtime doubles that need no emulator (detection only)."""
    made = []

    def make(spark=None, **spec):
        double = DatabricksRuntimeDouble(spec, tmp_path / f"rt{len(made)}")
        made.append(double)
        return double.activate(spark)

    yield make
    for double in reversed(made):
        double.deactivate()


def test_elsewhere_it_is_not_databricks(tmp_path):
    shim = DatabricksPlatform(version_file=str(tmp_path / "missing"))
    assert not shim.detect()
    assert detect_platform().name == "generic"


def test_notebook_on_a_classic_cluster(runtime):
    double = runtime(workload="notebook")
    shim = detect_platform()
    assert shim.name == "databricks"
    ctx = shim.context()
    assert ctx.role == "driver"
    details = ctx.details
    assert details["runtime"] == "15.4.x-scala2.12"
    assert details["compute"] == "classic" and details["workload"] == "notebook"
    assert details["notebook_path"] == double.spec["notebook_path"]
    assert details["notebook_id"] == double.spec["notebook_id"]
    assert details["cluster_id"] == double.spec["cluster_id"]
    assert details["workspace_url"] == "https://" + double.spec["workspace_url"]
    assert details["org_id"] == double.spec["org_id"] and details["user"] == double.spec["user"]
    assert "job_id" not in details
    tags = shim.context_tags()
    assert tags["spark_aml_bridge.platform"] == "databricks"
    assert tags["mlflow.databricks.notebookPath"] == double.spec["notebook_path"]
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["mlflow.databricks.cluster.id"] == double.spec["cluster_id"]
    assert shim.native_tracking_uri() == "databricks"


def test_job_from_the_command_context_alone(runtime):
    """A Python-file job: no IPython shell, no REPL context; dbutils via databricks.sdk.runtime."""
    double = runtime(workload="job", notebook_path=None)
    double.repl_context = None  # older runtimes: only the dbutils command context
    ctx = detect_platform().context()
    assert ctx.details["workload"] == "job"
    assert ctx.details["job_id"] == double.spec["job_id"]
    assert ctx.details["job_run_id"] == double.spec["job_run_id"]
    tags = detect_platform().context_tags()
    assert tags["mlflow.source.type"] == "JOB"
    assert (
        tags["mlflow.source.name"]
        == f"jobs/{double.spec['job_id']}/run/{double.spec['job_run_id']}"
    )


def test_serverless_and_executor_logging_requested(runtime):
    runtime(compute="serverless", env_version="3")
    shim = detect_platform()
    ctx = shim.context()
    assert ctx.details["runtime"] == "client.3" and ctx.details["compute"] == "serverless"
    assert shim.is_serverless()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shim.check_config(resolve_config({}, env={}, spark_conf={}))  # default: no warning
    with pytest.warns(UserWarning, match="serverless.*cannot reach the internet"):
        shim.check_config(resolve_config({"executors": True}, env={}, spark_conf={}))


def test_shared_access_mode_is_spark_connect(runtime):
    runtime(compute="shared")
    shim = detect_platform()
    assert shim.context().details["compute"] == "shared"
    with pytest.warns(UserWarning, match="standard \\(shared\\) access mode.*foreachBatch"):
        shim.check_config(
            resolve_config({}, env={"SPARK_AML_BRIDGE_EXECUTORS": "true"}, spark_conf={})
        )


def test_container_services_read_the_version_file(runtime):
    double = runtime(container=True, runtime_version="14.3.x-scala2.12")
    shim = DatabricksPlatform(version_file=str(double.version_file))
    assert shim.detect()
    details = shim.context().details
    assert details["container"] == "dcs" and details["runtime"] == "14.3.x-scala2.12"
    assert not DatabricksPlatform(version_file=str(double.version_file) + ".x").detect()


def test_spark_conf_and_job_cluster_name_on_a_driver(runtime, spark):
    """A plain Python process on a job cluster: the Spark conf and the cluster's name tell."""
    double = runtime(spark=spark, workload="process", cluster_name="job-55-run-66")
    double.repl_context = None
    details = detect_platform().context().details
    assert details["cluster_id"] == double.spec["cluster_id"]
    assert details["cluster_name"] == "job-55-run-66"
    assert details["workload"] == "job"
    assert (details["job_id"], details["job_run_id"]) == ("55", "66")


def test_executor_context_from_task_properties_and_the_driver(runtime, spark):
    double = runtime(spark=spark, workload="notebook")
    driver = detect_platform()
    spark.sparkContext.environment.update(driver.executor_env())
    try:

        def probe(_):
            from spark_aml_bridge.platforms import detect_platform

            shim = detect_platform()
            ctx = shim.context()
            yield json.dumps({"name": shim.name, "role": ctx.role, **ctx.details})

        found = json.loads(spark.sparkContext.parallelize([0], 1).mapPartitions(probe).first())
    finally:
        spark.sparkContext.environment.pop(CONTEXT_ENV, None)
    assert found["name"] == "databricks" and found["role"] == "executor"
    assert found["notebook_id"] == double.spec["notebook_id"]  # task-local property
    assert found["cluster_id"] == double.spec["cluster_id"]  # handed over by the driver
    assert found["workload"] == "notebook"
