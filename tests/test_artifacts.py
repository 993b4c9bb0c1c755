"""Run artifacts through AML's artifact service and blob SAS URLs, with unchanged MLflow calls.

Every test using `run` runs twice: with the emulator's own blob endpoint, and with Azurite
(Microsoft's Azure Storage emulator) as the blob store behind the SAS URLs.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

import spark_aml_bridge

BLOB_BACKENDS = {"local": "emulator", "azurite": "azurite_emulator"}


def _start_run(workspace, monkeypatch: pytest.MonkeyPatch):
    for name, value in workspace.info["env"].items():
        monkeypatch.setenv(name, value)
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"artifacts-{uuid.uuid4().hex[:8]}")
    return mlflow.start_run()


@pytest.fixture(params=sorted(BLOB_BACKENDS))
def run(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    workspace = request.getfixturevalue(BLOB_BACKENDS[request.param])
    with _start_run(workspace, monkeypatch) as active:
        yield active


@pytest.fixture
def local_run(emulator, monkeypatch: pytest.MonkeyPatch):
    """A run on the emulator's own blob endpoint (where faults can be injected)."""
    with _start_run(emulator, monkeypatch) as active:
        yield active


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_runs_get_azureml_artifact_uris(run):
    uri = run.info.artifact_uri
    assert uri.startswith("azureml://127.0.0.1:") and uri.endswith(
        f"/runs/{run.info.run_id}/artifacts"
    )


def test_files_directories_and_listing_round_trip(run, tmp_path):
    source = tmp_path / "src"
    (source / "nested" / "deeper").mkdir(parents=True)
    payloads = {
        "binary.bin": bytes(range(256)) * 1000,
        "empty.txt": b"",
        "nested/ünïcödé name.txt": "grüße".encode(),
        "nested/deeper/data.csv": b"a,b\n1,2\n",
    }
    for name, data in payloads.items():
        (source / name).write_bytes(data)
    mlflow.log_artifacts(str(source), artifact_path="bundle")
    mlflow.log_text("hello", "notes/readme.txt")
    mlflow.log_dict({"k": [1, 2]}, "config.json")

    client = MlflowClient()
    run_id = run.info.run_id
    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {("bundle", True), ("notes", True), ("config.json", False)}
    nested = {(f.path, f.is_dir) for f in client.list_artifacts(run_id, "bundle/nested")}
    assert nested == {("bundle/nested/deeper", True), ("bundle/nested/ünïcödé name.txt", False)}

    local = client.download_artifacts(run_id, "bundle", str(tmp_path))
    for name, data in payloads.items():
        assert (tmp_path / "bundle" / name).read_bytes() == data
    assert local == str(tmp_path / "bundle")
    one = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="bundle/binary.bin")
    assert open(one, "rb").read() == payloads["binary.bin"]
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes/readme.txt") == "hello"
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json") == {"k": [1, 2]}


def test_a_large_file_goes_up_in_blocks_and_comes_back_exactly(run, tmp_path):
    big = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    with open(big, "wb") as out:
        for i in range(50):
            out.write(chunk[i:] + chunk[:i])
    mlflow.log_artifact(str(big), "large")
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="large/big.bin", dst_path=str(tmp_path / "out")
    )
    assert os.path.getsize(back) == 50 * 1024 * 1024
    assert _sha256(back) == _sha256(big)


def test_a_thousand_small_files(run, tmp_path):
    source = tmp_path / "many"
    source.mkdir()
    for i in range(1000):
        (source / f"f{i:04d}.txt").write_text(f"file {i}")
    mlflow.log_artifacts(str(source), "many")
    listed = MlflowClient().list_artifacts(run.info.run_id, "many")
    assert len(listed) == 1000
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="many", dst_path=str(tmp_path / "back")
    )
    assert sorted(os.listdir(back)) == sorted(os.listdir(source))
    assert open(os.path.join(back, "f0999.txt")).read() == "file 999"


def test_with_azurite_the_bytes_are_in_azurite(azurite_emulator, monkeypatch):
    from azure.storage.blob import ContainerClient

    with _start_run(azurite_emulator, monkeypatch) as active:
        mlflow.log_text("stored in Azurite", "where/am i.txt")
    info = azurite_emulator.info
    assert info["blob_backend"] == "azurite" and info["blob_endpoint"].startswith("http://127.")
    # Read with the storage account's key straight from Azurite, not through the bridge.
    container = ContainerClient(
        info["blob_endpoint"],
        info["blob_container"],
        credential={"account_name": info["blob_account"], "account_key": info["blob_account_key"]},
    )
    name = f"ExperimentRun/dcid.{active.info.run_id}/where/am i.txt"
    assert [b.name for b in container.list_blobs(f"ExperimentRun/dcid.{active.info.run_id}/")] == [
        name
    ]
    assert container.download_blob(name).readall() == b"stored in Azurite"


def test_rewriting_a_path_keeps_every_version_and_reads_the_newest(run, tmp_path):
    # AML run artifacts are write-once; MLflow code that rewrites a file still runs unchanged.
    path = tmp_path / "once.txt"
    for content in ("first", "second", "third"):
        path.write_text(content)
        mlflow.log_artifact(str(path))
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/once.txt") == "third"
    client = MlflowClient()
    (tmp_path / "all").mkdir()
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "all"))
    assert sorted(p.name for p in Path(local).iterdir()) == ["once.txt"]
    assert (Path(local) / "once.txt").read_text() == "third"
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["once.txt"]
    # Other clients see the first content in place and the later ones as versions.
    repo = get_artifact_repository(run.info.artifact_uri)
    every = sorted(repo._all_paths())
    assert every[-1] == "once.txt" and len(every) == 3
    assert all(p.startswith(".spark_aml_bridge/versions/once.txt/") for p in every[:2])


def test_artifacts_stay_readable_after_disconnect(run, tmp_path):
    mlflow.log_text("kept", "kept.txt")
    uri = f"{run.info.artifact_uri}/kept.txt"
    mlflow.end_run()
    spark_aml_bridge.disconnect()
    mlflow.set_tracking_uri(f"file://{tmp_path}/elsewhere")
    try:
        assert mlflow.artifacts.load_text(uri) == "kept"
    finally:
        mlflow.set_tracking_uri(None)


def test_blob_unavailability_is_retried(local_run, emulator):
    emulator.inject_faults(status=503, count=2, retry_after=0, path_contains="dcid.")
    mlflow.log_text("after a storm", "storm.txt")
    assert mlflow.artifacts.load_text(f"{local_run.info.artifact_uri}/storm.txt") == "after a storm"
