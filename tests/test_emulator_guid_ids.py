"""The emulator's ids are Azure ML's: experiment and run ids are GUIDs (issue 10).

Checked with a plain MLflow client (stock REST store over HTTPS with a bearer token, no bridge),
on whichever MLflow major this suite runs: MLflow's SQL store behind keeps its integers and
32-hex ids, and none of them reaches a client.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from durable_support import fetch_token
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from spark_aml_bridge.emulator.aml_ids import is_guid


@pytest.fixture
def client(emulator, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", fetch_token(emulator.info))
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", emulator.info["ca_bundle"])
    return MlflowClient(emulator.info["workspace_url"], emulator.info["workspace_url"])


def _not_found(call) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST", caught.value
    return caught.value.message


def test_a_plain_client_sees_guid_experiment_and_run_ids(client, emulator):
    default = client.get_experiment_by_name("Default")
    assert is_guid(default.experiment_id)
    assert default.artifact_location.endswith(f"/experiments/{default.experiment_id}")
    # MLflow's fluent API sends "0" when no experiment is set: the run lands in Default.
    assert client.create_run("0").info.experiment_id == default.experiment_id
    # Anywhere else MLflow's own ids are unknown, and the error names the id the client sent.
    assert _not_found(lambda: client.get_experiment("0")).endswith("id=0 exists")
    unknown = str(uuid.uuid4())
    assert unknown in _not_found(lambda: client.get_run(unknown))

    experiment_id = client.create_experiment(f"guids-{uuid.uuid4().hex[:8]}")
    assert is_guid(experiment_id)
    parent = client.create_run(experiment_id).info
    child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent.run_id}).info
    assert is_guid(parent.run_id) and is_guid(child.run_id)
    assert (parent.experiment_id, child.experiment_id) == (experiment_id, experiment_id)
    assert parent.artifact_uri.endswith(
        f"/experiments/{experiment_id}/runs/{parent.run_id}/artifacts"
    )
    client.log_metric(child.run_id, "loss", 0.25)
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert [m.value for m in client.get_metric_history(child.run_id, "loss")] == [0.25]

    def found(filter_string: str = "") -> list[str]:
        runs = client.search_runs([experiment_id], filter_string, order_by=["start_time ASC"])
        return [run.info.run_id for run in runs]

    assert found() == [parent.run_id, child.run_id]
    assert found(f"tags.mlflow.parentRunId = '{parent.run_id}'") == [child.run_id]
    assert found(f"attributes.run_id = '{child.run_id}'") == [child.run_id]
    assert found(f"attributes.run_id IN ('{parent.run_id}', '{child.run_id}')") == [
        parent.run_id,
        child.run_id,
    ]
    assert found(f"attributes.run_id = '{uuid.uuid4()}'") == []

    # Registry: a runs:/ source and the run id round-trip as GUIDs, and search by run id works.
    name = f"guids-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{parent.run_id}/model", parent.run_id)
    assert (version.run_id, version.source) == (parent.run_id, f"runs:/{parent.run_id}/model")
    stored = client.get_model_version(name, version.version)
    assert (stored.run_id, stored.source) == (parent.run_id, f"runs:/{parent.run_id}/model")
    assert [v.name for v in client.search_model_versions(f"run_id = '{parent.run_id}'")] == [name]

    # AML's run-history service addresses the run by the same GUIDs (and by experiment name).
    info = emulator.info
    headers = {"Authorization": f"Bearer {fetch_token(info)}"}
    base = f"{info['history_url']}/experimentids/{experiment_id}/runs/{parent.run_id}/artifacts"
    upload = requests.post(
        base + "/batch/metadata",
        json={"paths": [{"path": "notes.txt"}]},
        headers=headers,
        verify=info["ca_bundle"],
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    artifact = upload.json()["artifacts"]["notes.txt"]
    assert artifact["container"] == f"dcid.{parent.run_id}"
    by_name = base.replace(
        f"/experimentids/{experiment_id}/",
        f"/experiments/{client.get_experiment(experiment_id).name}/",
    )
    listing = requests.get(by_name, headers=headers, verify=info["ca_bundle"], timeout=60)
    assert [a["path"] for a in listing.json()["value"]] == ["notes.txt"]
    wrong = requests.get(
        base.replace(experiment_id, default.experiment_id),
        headers=headers,
        verify=info["ca_bundle"],
        timeout=60,
    )
    assert wrong.status_code == 404


def test_search_filters_translate_run_ids_and_leave_other_values_alone(tmp_path):
    from spark_aml_bridge.emulator.aml_ids import RUN, AmlIds
    from spark_aml_bridge.emulator.id_translation import _Request

    ids = AmlIds(tmp_path / "ids.db")
    mlflow_id = uuid.uuid4().hex
    guid = ids.to_aml(RUN, mlflow_id)
    request = _Request(ids, "/api/2.0/mlflow/runs/search")
    assert request.filter_in(f"run_id = '{guid}'") == f"run_id = '{mlflow_id}'"
    assert request.filter_in(f'tags.`mlflow.parentRunId` = "{guid}"') == (
        f'tags.`mlflow.parentRunId` = "{mlflow_id}"'
    )
    # Another tag whose name ends in run_id, a param, an unknown parent: the client's own values.
    for kept in (
        f"tags.`spark_aml_bridge.primary_run_id` = '{guid}'",
        f"params.run_id = '{guid}'",
        "tags.mlflow.parentRunId = 'a-primary-run'",
    ):
        assert request.filter_in(kept) == kept
    # A run id that is not this workspace's GUID (e.g. MLflow's own hex id) finds nothing.
    assert mlflow_id not in request.filter_in(f"run_id IN ('{mlflow_id}')")
    ids.close()
    assert AmlIds(tmp_path / "ids.db").to_mlflow(RUN, guid) == mlflow_id  # kept on disk
