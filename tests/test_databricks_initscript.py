"""The Databricks cluster init script: run against a temporary root, then zero-code processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.errors import ConfigError
from spark_aml_bridge.platforms.databricks.initscript import BLOCK_BEGIN, databricks_init_script

REF = "{{secrets/aml/sp-secret}}"
VERSION = spark_aml_bridge.__version__


def _dist_info(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """An installed distribution as pip sees it (metadata only)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal wheel (metadata and an empty module) for pip's --find-links."""
    module = name.replace("-", "_")
    path = folder / f"{module}-{version}-py3-none-any.whl"
    dist = f"{module}-{version}.dist-info"
    meta = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{module}_stub/__init__.py": "",
        f"{dist}/METADATA": "\n".join(meta) + "\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{dist}/RECORD", record)
    return path


def _cluster_root(tmp_path: Path, installed: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A temporary '/' with the cluster's Python (a venv holding `installed`) and its pip."""
    root = tmp_path / "root"
    python_home = root / "databricks" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(python_home)], check=True)
    site = next((python_home / "lib").glob("python3*/site-packages"))
    for name, version in installed.items():
        _dist_info(site, name, version)
    pip = python_home / "bin" / "pip"
    pip.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{python_home}/bin/python" "$@"\n'
    )
    pip.chmod(0o755)
    links = tmp_path / "wheels"
    links.mkdir()
    requires = tuple(r for r in metadata.requires("spark-aml-bridge") or () if "extra ==" not in r)
    _wheel(links, "spark-aml-bridge", VERSION, requires)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",  # nothing from the internet: only these wheels
        "PIP_FIND_LINKS": str(links),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "SPARK_AML_BRIDGE_INIT_PIP": str(pip),
        "SPARK_AML_BRIDGE_INIT_SPARK_ENV": str(root / "databricks/spark/conf/spark-env.sh"),
    }
    return root, env


def _installed(root: Path) -> dict[str, str]:
    python = root / "databricks/python/bin/python"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("==") for line in result.stdout.split() if "==" in line)


# What a runtime ships, and what this package needs (satisfied, except packaging).
RUNTIME = {
    "mlflow": "2.12.2",
    "mlflow-skinny": "2.12.2",
    "pyspark": "3.5.0",
    "azure-identity": "1.16.0",
    "azure-core": "1.30.2",
    "azure-storage-blob": "12.19.0",
    "requests": "2.31.0",
}


def _settings(info: dict) -> dict:
    return {
        "workspace": info["tracking_uri"],
        "credential": "databricks-env",
        "tenant_id": info["tenant_id"],
        "client_id": info["client_id"],
        # The emulator's private authority and CA (a real workspace needs neither).
        "authority": info["authority"],
        "ca_bundle": info["ca_bundle"],
    }


def test_init_script_installs_without_touching_the_runtime(emulator, tmp_path):
    root, env = _cluster_root(tmp_path, RUNTIME)
    _wheel(Path(env["PIP_FIND_LINKS"]), "packaging", "24.0")  # the one missing dependency
    script = tmp_path / "init.sh"
    script.write_text(databricks_init_script(_settings(emulator.info), client_secret_ref=REF))
    for _ in range(2):  # a restart runs it again: still one block of settings
        result = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
    assert "AZURE_CLIENT_SECRET is not set" in result.stderr  # no cluster-level reference here
    installed = _installed(root)
    for name, version in RUNTIME.items():
        assert installed[name] == version, name  # nothing the runtime ships was changed
    assert installed["spark-aml-bridge"] == VERSION and installed["packaging"] == "24.0"
    spark_env = Path(env["SPARK_AML_BRIDGE_INIT_SPARK_ENV"]).read_text()
    assert spark_env.count(BLOCK_BEGIN) == 1
    assert f"export MLFLOW_TRACKING_URI={emulator.info['tracking_uri']}" in spark_env
    text = script.read_text()
    assert emulator.info["client_secret"] not in text + spark_env
    assert REF in text and REF not in spark_env  # only the cluster configuration resolves it


def test_init_script_falls_back_to_pinning_mlflow_and_pyspark(emulator, tmp_path):
    runtime = dict(RUNTIME, **{"azure-core": "1.20.0", "packaging": "23.0"})
    root, env = _cluster_root(tmp_path, runtime)
    _wheel(Path(env["PIP_FIND_LINKS"]), "azure-core", "1.31.0")
    script = tmp_path / "init.sh"
    script.write_text(databricks_init_script(_settings(emulator.info), client_secret_ref=REF))
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "retrying with the runtime's MLflow" in result.stderr
    installed = _installed(root)
    assert installed["azure-core"] == "1.31.0"  # too old for the package: upgraded
    assert (installed["mlflow"], installed["pyspark"]) == ("2.12.2", "3.5.0")


def test_init_script_refuses_secret_values(emulator):
    with pytest.raises(ConfigError, match="is a secret"):
        databricks_init_script(
            {"workspace": emulator.info["tracking_uri"], "client_secret": "plain"}
        )
    with pytest.raises(ConfigError, match="secrets/<scope>/<key>"):
        databricks_init_script(_settings(emulator.info), client_secret_ref="plain-value")


ZERO_CODE = textwrap.dedent(
    """
    import mlflow  # no import of spark_aml_bridge: MLflow loads it through its entry points
    from pyspark.sql import SparkSession

    experiment = mlflow.set_experiment("init-script-zero-code")
    with mlflow.start_run() as run:
        mlflow.log_metric("driver", 1.0)
    print("DRIVER", run.info.run_id)

    def log(batches):
        import mlflow
        import pandas as pd
        for frame in batches:
            with mlflow.start_run(experiment_id=experiment.experiment_id) as r:
                mlflow.log_metric("rows", len(frame))
            yield pd.DataFrame({"run_id": [r.info.run_id]})

    builder = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
    for key in ("spark.driver.host", "spark.driver.bindAddress"):
        builder = builder.config(key, "127.0.0.1")
    spark = builder.getOrCreate()
    for row in spark.range(0, 4, numPartitions=2).mapInPandas(log, "run_id string").collect():
        print("EXECUTOR", row.run_id)
    spark.stop()
    """
)


def test_zero_code_driver_and_executors_with_the_scripts_environment(emulator, tmp_path):
    """A process started with spark-env.sh's environment (and the cluster-level secret reference
    resolved, as Databricks does) tracks to the workspace, and so do its Spark executors."""
    info = emulator.info
    spark_env = tmp_path / "spark-env.sh"
    script = tmp_path / "init.sh"
    script.write_text(databricks_init_script(_settings(info), client_secret_ref=REF))
    noop_pip = tmp_path / "pip"
    noop_pip.write_text("#!/bin/sh\nexit 0\n")  # the package is installed in this venv already
    noop_pip.chmod(0o755)
    subprocess.run(
        ["bash", str(script)],
        env={
            "PATH": os.environ["PATH"],
            "SPARK_AML_BRIDGE_INIT_PIP": str(noop_pip),
            "SPARK_AML_BRIDGE_INIT_SPARK_ENV": str(spark_env),
        },
        check=True,
        capture_output=True,
        timeout=60,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SPARK_AML"))}
    base.pop("MLFLOW_TRACKING_URI", None)
    cluster = {
        **base,
        "DATABRICKS_RUNTIME_VERSION": "15.4.x-scala2.12",
        "AZURE_CLIENT_SECRET": info["client_secret"],  # {{secrets/aml/sp-secret}}, resolved
        "PYSPARK_PYTHON": sys.executable,
    }
    dump = subprocess.run(
        ["bash", "-c", f"set -a; . {spark_env}; exec {sys.executable} -c '{_PRINT_ENV}'"],
        env=cluster,
        capture_output=True,
        text=True,
        check=True,
    )
    env = json.loads(dump.stdout)
    result = subprocess.run(
        [sys.executable, "-c", ZERO_CODE], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert info["client_secret"] not in result.stdout + result.stderr
    lines = result.stdout.split("\n")
    driver = [line.split()[1] for line in lines if line.startswith("DRIVER")]
    executors = [line.split()[1] for line in lines if line.startswith("EXECUTOR")]
    assert len(driver) == 1 and len(executors) == 2

    spark_aml_bridge.connect(
        info["tracking_uri"],
        credential="service-principal",
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        authority=info["authority"],
        ca_bundle=info["ca_bundle"],
        executors=False,
    )
    client = MlflowClient()
    run = client.get_run(driver[0])
    assert run.data.metrics == {"driver": 1.0}
    assert run.data.tags["spark_aml_bridge.platform"] == "databricks"
    assert run.data.tags["spark_aml_bridge.role"] == "driver"
    for run_id in executors:
        tags = client.get_run(run_id).data.tags
        assert tags["spark_aml_bridge.role"] == "executor"
        assert tags["spark_aml_bridge.platform"] == "databricks"


_PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
