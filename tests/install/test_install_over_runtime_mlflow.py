"""Installing the package over a runtime's own MLflow never replaces it, and then works.

Databricks and Synapse runtimes ship full `mlflow` (often <= 2.15, which does not depend on
mlflow-skinny) or `mlflow-skinny`; a hard mlflow-skinny requirement would install a second copy
over them. Each case gets a fresh venv with the runtime's MLflow, then `pip install` of this
package, then a zero-code client run against the emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent(
    """
    import json, mlflow
    with mlflow.start_run() as run:
        mlflow.log_param("p", "v")
        mlflow.log_metric("m", 1.5)
    print(json.dumps({"run_id": run.info.run_id, "mlflow": mlflow.__version__}))
    """
)


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _installed(venv: Path) -> dict[str, str]:
    listing = _pip(venv, "list", "--format=json")
    assert listing.returncode == 0, listing.stderr
    return {p["name"].lower(): p["version"] for p in json.loads(listing.stdout)}


@pytest.mark.parametrize(
    "runtime_mlflow",
    [
        ["mlflow==2.12.*", "sqlalchemy<2.1"],  # an old ML runtime: full mlflow, no skinny
        ["mlflow-skinny==3.*"],  # a runtime shipping only mlflow-skinny
    ],
    ids=["full-mlflow-2.12", "mlflow-skinny-3"],
)
def test_install_keeps_the_runtime_mlflow(runtime_mlflow, tmp_path, emulator):
    venv = tmp_path / "runtime"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = _pip(venv, "install", "-q", *runtime_mlflow)
    assert result.returncode == 0, result.stderr[-3000:]
    before = _installed(venv)

    result = _pip(venv, "install", "-q", str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    after = _installed(venv)

    for name in ("mlflow", "mlflow-skinny"):
        assert after.get(name) == before.get(name), (
            f"{name} changed: {before.get(name)} -> {after.get(name)}"
        )
    assert "pyspark" not in after
    assert "spark-aml-bridge" in after

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SPARK_AML"))}
    env.update(emulator.info["env"])
    env["MLFLOW_TRACKING_URI"] = emulator.info["tracking_uri"]
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CLIENT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reported = json.loads(run.stdout.strip().splitlines()[-1])
    assert reported["mlflow"] == (before.get("mlflow") or before.get("mlflow-skinny"))

    from mlflow.tracking import MlflowClient

    import spark_aml_bridge

    for name, value in emulator.info["env"].items():
        os.environ[name] = value
    try:
        spark_aml_bridge.connect()
        data = MlflowClient().get_run(reported["run_id"]).data
        assert data.params == {"p": "v"} and data.metrics == {"m": 1.5}
    finally:
        spark_aml_bridge.disconnect()
        for name in emulator.info["env"]:
            os.environ.pop(name, None)


def test_a_missing_mlflow_gets_a_fix_naming_error(tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = _pip(venv, "install", "-q", str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlflow" not in _installed(venv) and "mlflow-skinny" not in _installed(venv)
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import spark_aml_bridge; spark_aml_bridge.connect()"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode != 0
    assert "MLflow is not installed" in probe.stderr
    assert "pip install 'spark-aml-bridge[mlflow]'" in probe.stderr
