"""Models logged through the bridge are found where every client looks (issue 10).

A model logged inside a run keeps its files under the run's artifacts, so a separate client —
plain MLflow 2.x or 3.x over HTTPS with a bearer token, no bridge — lists, loads and inspects it
by ``runs:/`` and ``models:/``, and Azure ML's artifact listing of the run shows the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import requests
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from plain_access import emulator_token
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import spark_aml_bridge

MLFLOW_3 = int(mlflow.__version__.split(".")[0]) >= 3
PLAIN_CLIENT = Path(__file__).with_name("plain_client.py")


def _pythons() -> list[str]:
    """The interpreters of the plain clients: every MLflow major CI installs (run-all.sh names
    them), else this one."""
    named = os.environ.get("SPARK_AML_BRIDGE_TEST_PYTHONS", "").split()
    for python in named:
        assert os.access(python, os.X_OK), f"SPARK_AML_BRIDGE_TEST_PYTHONS names {python}"
    return named or [sys.executable]


def _log_in_run(name: str = "model"):
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    signature = infer_signature(features, model.predict(features))
    kwargs = {"name": name, "serialization_format": "cloudpickle"} if MLFLOW_3 else {}
    if not MLFLOW_3:
        kwargs["artifact_path"] = name
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        info = mlflow.sklearn.log_model(model, signature=signature, **kwargs)
    return run, info, model


def test_a_plain_client_finds_and_loads_models_logged_in_a_run(use_emulator, tmp_path):
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"everywhere-{uuid.uuid4().hex[:8]}")
    experiments_before = {e.name for e in MlflowClient().search_experiments()}
    run, info, _ = _log_in_run()
    registered = f"everywhere-{uuid.uuid4().hex[:6]}"
    version = mlflow.register_model(info.model_uri, registered).version

    # No extra visible run per in-run model: the hidden experiment is not even created.
    client = MlflowClient()
    assert {e.name for e in client.search_experiments()} == experiments_before
    assert client.search_runs([run.info.experiment_id])[0].info.run_id == run.info.run_id
    assert len(client.search_runs([run.info.experiment_id])) == 1

    # Azure ML's own artifact listing of the run (what studio shows) has the model folder.
    emu = use_emulator.info
    token = emulator_token(emu)
    listing = requests.get(
        f"{emu['history_url']}/experimentids/{run.info.experiment_id}/runs/"
        f"{run.info.run_id}/artifacts",
        headers={"Authorization": f"Bearer {token}"},
        verify=emu["ca_bundle"],
        timeout=60,
    ).json()
    paths = {a["path"] for a in listing["value"]}
    assert {"model/MLmodel", "model/model.pkl"} <= paths, paths

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["MLFLOW_TRACKING_URI"] = emu["workspace_url"]
    env["MLFLOW_TRACKING_TOKEN"] = token
    env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = emu["ca_bundle"]
    env.pop("MLFLOW_REGISTRY_URI", None)
    for python in _pythons():
        done = subprocess.run(
            [python, str(PLAIN_CLIENT), run.info.run_id, "model", registered, str(version)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["store"] == "RestStore", seen  # MLflow's stock REST client, no bridge
        assert ("model", True) in [tuple(a) for a in seen["run_artifacts"]], seen
        assert {"MLmodel", "model.pkl"} <= set(seen["model_files"]), seen
        assert seen["runs_predict"] == [0, 2] and seen["models_predict"] == [0, 2], seen
        assert seen["info_run_id"] == run.info.run_id and seen["info_signature"], seen
        assert seen["info_model_uri"] == f"runs:/{run.info.run_id}/model", seen


def test_download_of_dot_equals_the_root_download(use_emulator, tmp_path):
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"dot-{uuid.uuid4().hex[:8]}")
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "b.txt").write_text("b")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(source))
    client = MlflowClient()

    def files(root: str) -> dict[str, str]:
        base = Path(root)
        return {str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}

    (tmp_path / "root").mkdir()
    (tmp_path / "dot").mkdir()
    root = files(client.download_artifacts(run.info.run_id, "", str(tmp_path / "root")))
    dot = files(client.download_artifacts(run.info.run_id, ".", str(tmp_path / "dot")))
    assert dot == root == {"a.txt": "a", "sub/b.txt": "b"}
    assert [f.path for f in client.list_artifacts(run.info.run_id, ".")] == ["a.txt", "sub"]
    assert sys.version_info >= (3, 10)
