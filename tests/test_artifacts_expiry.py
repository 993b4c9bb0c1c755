"""Expired blob SAS URLs: downloads ask for a fresh one; uploads fail loudly, never silently."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

import spark_aml_bridge


@pytest.fixture
def repo(short_sas_emulator, monkeypatch):
    for name, value in short_sas_emulator.info["env"].items():
        monkeypatch.setenv(name, value)
    spark_aml_bridge.connect()
    mlflow.set_experiment(f"sas-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        yield get_artifact_repository(run.info.artifact_uri)


def test_an_expired_read_url_is_replaced_once(repo, tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("payload")
    repo.log_artifact(str(source))
    stale = repo._content_uri("a.txt")
    time.sleep(2.5)  # the read SAS has expired
    calls = []
    fresh_lookup = repo._content_uri

    def first_stale(path):
        calls.append(path)
        return stale if len(calls) == 1 else fresh_lookup(path)

    repo._content_uri = first_stale
    target = tmp_path / "back.txt"
    repo._download_file("a.txt", str(target))
    assert target.read_text() == "payload" and len(calls) == 2


def test_an_expired_upload_url_is_a_clear_error(repo, tmp_path):
    source = tmp_path / "late.txt"
    source.write_text("late")
    targets = repo._register(["late.txt"])
    time.sleep(2.5)  # the write SAS has expired before the bytes went up
    with pytest.raises(MlflowException) as info:
        repo._put_blob(str(source), "late.txt", targets["late.txt"])
    assert "refused by storage" in str(info.value) and "expired" in str(info.value)
