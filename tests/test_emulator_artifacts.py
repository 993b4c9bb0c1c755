"""The emulator's run-history artifact service and blob endpoint, with real clients.

Raw `requests` against the history routes (bearer from azure-identity against the emulator's
authority), azure-storage-blob's `BlobClient.from_blob_url` against the SAS URLs it hands out,
the stock MLflow client for the runs' `azureml://` artifact URIs, and Azurite (npm) as a real
Azure Storage implementation behind the same service.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import sqlite3
import time
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
)
from azure.storage.blob import BlobClient, ExponentialRetry, generate_blob_sas

from spark_aml_bridge.emulator import EmulatorProcess, start_emulator
from spark_aml_bridge.emulator.mlflow_backend import rebase_artifact_uris

ARM_SCOPE = "https://management.azure.com/.default"
STARTUP_TIMEOUT = 180
PAGE_SIZE = 3
MiB = 1024 * 1024
ERROR_FIELDS = {"error", "correlation", "environment", "location", "time", "componentName"}
ROOT_ERROR_FIELDS = {
    "code",
    "severity",
    "message",
    "messageFormat",
    "messageParameters",
    "referenceCode",
    "detailsUri",
    "target",
    "details",
    "innerError",
    "additionalInfo",
}
ARTIFACT_FIELDS = {
    "artifactId",
    "origin",
    "container",
    "path",
    "etag",
    "createdTime",
    "dataPath",
    "tags",
}
CONTENT_FIELDS = {"contentUri", "origin", "container", "path", "tags"}


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory):
    handle = start_emulator(
        tmp_path_factory.mktemp("emu-artifacts"),
        timeout=STARTUP_TIMEOUT,
        artifact_page_size=PAGE_SIZE,
    )
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _normal_service(request: pytest.FixtureRequest):
    yield
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").reset()


def bearer(emu: EmulatorProcess) -> str:
    from azure.identity import ClientSecretCredential

    info = emu.info
    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )
    return credential.get_token(ARM_SCOPE).token


@pytest.fixture(scope="module")
def token(emu: EmulatorProcess) -> str:
    return bearer(emu)


class History:
    """Raw HTTP against one run's history routes (CA passed per call: REQUESTS_CA_BUNDLE wins
    over `Session.verify` on these machines)."""

    def __init__(self, emu: EmulatorProcess, token: str | None, experiment: str, run_id: str):
        self.emu = emu
        self.token = token
        self.base = f"{emu.info['history_url']}/experimentids/{experiment}/runs/{run_id}/artifacts"
        self.run_id = run_id
        self.experiment = experiment

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.request(
            method, url, headers=headers, verify=self.emu.info["ca_bundle"], timeout=60, **kwargs
        )

    def register(self, *paths: str) -> requests.Response:
        return self.call(
            "POST", self.base + "/batch/metadata", json={"paths": [{"path": p} for p in paths]}
        )

    def upload_urls(self, *paths: str) -> dict[str, str]:
        response = self.register(*paths)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["errors"] == {}
        return {p: body["artifactContentInformation"][p]["contentUri"] for p in paths}

    def read_url(self, path: str) -> str:
        response = self.call("GET", self.base + "/contentinfo", params={"path": path})
        assert response.status_code == 200, response.text
        return response.json()["contentUri"]


def make_run(emu: EmulatorProcess, token: str, name: str | None = None) -> tuple[str, str]:
    """(experiment id, run id) of a new run, created through the workspace's MLflow REST API."""
    url, ca = emu.info["workspace_url"], emu.info["ca_bundle"]
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(
        f"{url}/api/2.0/mlflow/experiments/create",
        json={"name": name or f"artifacts-{uuid.uuid4().hex[:8]}"},
        headers=headers,
        verify=ca,
        timeout=60,
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    run = requests.post(
        f"{url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id, "start_time": int(time.time() * 1000)},
        headers=headers,
        verify=ca,
        timeout=60,
    )
    assert run.status_code == 200, run.text
    return experiment_id, run.json()["run"]["info"]["run_id"]


@pytest.fixture
def history(emu: EmulatorProcess, token: str) -> History:
    experiment_id, run_id = make_run(emu, token)
    return History(emu, token, experiment_id, run_id)


def blob(url: str, emu: EmulatorProcess, **kwargs) -> BlobClient:
    # Storage's default retry waits 15 s (±3) before its first retry; tests retry at once.
    kwargs.setdefault(
        "retry_policy",
        ExponentialRetry(initial_backoff=0, increment_base=0.1, random_jitter_range=0),
    )
    verify = emu.info["ca_bundle"] if url.startswith("https:") else True
    return BlobClient.from_blob_url(url, connection_verify=verify, **kwargs)


def assert_aml_error(response: requests.Response, status: int, inner: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert ERROR_FIELDS <= set(body), body
    assert ROOT_ERROR_FIELDS <= set(body["error"]), body
    assert "error_code" not in body
    if inner is not None:
        assert body["error"]["innerError"]["code"] == inner
    return body


def storage_code(response: requests.Response) -> str:
    return response.headers.get("x-ms-error-code", "")


def sas_fields(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


# -- artifact URIs of runs ---------------------------------------------------------------------


def test_runs_created_by_mlflow_get_azureml_artifact_uris(emu, token, monkeypatch):
    import mlflow
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", emu.info["ca_bundle"])
    client = MlflowClient(emu.info["workspace_url"])
    experiment_id = client.create_experiment(f"uris-{uuid.uuid4().hex[:8]}")
    host = emu.info["workspace_endpoint"].split("://", 1)[1]
    experiment_uri = (
        f"azureml://{host}/mlflow/v2.0{emu.info['workspace_arm_id']}/experiments/{experiment_id}"
    )
    assert client.get_experiment(experiment_id).artifact_location == experiment_uri
    default = client.get_experiment_by_name("Default")
    assert default.artifact_location.endswith(f"/experiments/{default.experiment_id}")

    run = client.create_run(experiment_id)
    expected = f"{experiment_uri}/runs/{run.info.run_id}/artifacts"
    assert run.info.artifact_uri == expected
    assert client.get_run(run.info.run_id).info.artifact_uri == expected
    found = client.search_runs([experiment_id])
    assert [r.info.artifact_uri for r in found] == [expected]
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    # runs/update answers a run_info of its own.
    update = requests.post(
        emu.info["workspace_url"] + "/api/2.0/mlflow/runs/update",
        json={"run_id": run.info.run_id, "status": "FINISHED"},
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.info["ca_bundle"],
        timeout=60,
    )
    assert update.json()["run_info"]["artifact_uri"] == expected
    assert mlflow.__version__ == emu.info["mlflow_version"]


def test_stored_artifact_uris_follow_the_workspace_host(tmp_path):
    root = (
        "azureml://127.0.0.1:2222/mlflow/v2.0/subscriptions/s/resourceGroups/r/providers"
        "/Microsoft.MachineLearningServices/workspaces/w/experiments"
    )
    old = root.replace(":2222", ":1111")
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location TEXT)")
        conn.execute("CREATE TABLE runs (run_uuid TEXT, artifact_uri TEXT)")
        conn.execute(
            "INSERT INTO experiments VALUES (1, ?), (2, 'mlflow-artifacts:/2')", (old + "/1",)
        )
        conn.execute(
            "INSERT INTO runs VALUES ('r1', ?), ('r2', ?)",
            (old + "/1/runs/r1/artifacts", root + "/1/runs/r2/artifacts"),
        )
    assert rebase_artifact_uris(db, root) == 2
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT artifact_location FROM experiments ORDER BY 1").fetchall() == [
            (root + "/1",),
            ("mlflow-artifacts:/2",),
        ]
        assert {r[0] for r in conn.execute("SELECT artifact_uri FROM runs")} == {
            root + "/1/runs/r1/artifacts",
            root + "/1/runs/r2/artifacts",
        }


def test_emulator_json_describes_the_artifact_services(emu):
    info = emu.info
    assert info["history_url"] == (
        f"{info['workspace_endpoint']}/history/v1.0{info['workspace_arm_id']}"
    )
    assert info["blob_backend"] == "local"
    assert info["sas_lifetime"] == 3600
    assert info["artifact_page_size"] == PAGE_SIZE
    assert info["blob_container"] == "azureml"
    account = info["blob_account"]
    assert info["blob_endpoint"].startswith("https://127.0.0.1:")
    assert info["blob_endpoint"].endswith(f"/{account}")
    assert urlsplit(info["blob_endpoint"]).port != urlsplit(info["workspace_endpoint"]).port
    assert account.isalnum() and account.islower() and 3 <= len(account) <= 24


# -- the history service -----------------------------------------------------------------------


def test_upload_list_download_round_trip(history: History, emu, tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(72):
            out.write(os.urandom(MiB))
    payloads = {
        "small.txt": b"hello, workspace\n",
        "empty.bin": b"",
        "dir/sub/ünï cödé.txt": "grüße".encode(),
    }
    paths = [*payloads, "dir/big.bin"]
    response = history.register(*paths)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"artifacts", "artifactContentInformation", "errors"}
    assert set(body["artifacts"]) == set(body["artifactContentInformation"]) == set(paths)
    assert body["errors"] == {}
    run_id = history.run_id
    for path in paths:
        artifact = body["artifacts"][path]
        assert set(artifact) >= ARTIFACT_FIELDS
        assert artifact["artifactId"] == f"ExperimentRun/dcid.{run_id}/{path}"
        assert (artifact["origin"], artifact["container"], artifact["path"]) == (
            "ExperimentRun",
            f"dcid.{run_id}",
            path,
        )
        content = body["artifactContentInformation"][path]
        assert set(content) == CONTENT_FIELDS
        assert content["container"] == f"dcid.{run_id}" and content["path"] == path
        assert content["contentUri"].startswith(emu.info["blob_endpoint"] + "/azureml/")
        fields = sas_fields(content["contentUri"])
        assert fields["sp"] == "cw" and fields["sr"] == "b"
        expiry = dt.datetime.fromisoformat(fields["se"].replace("Z", "+00:00")).timestamp()
        assert abs(expiry - (time.time() + emu.info["sas_lifetime"])) < 120

    emu.reset_stats()
    urls = {p: body["artifactContentInformation"][p]["contentUri"] for p in paths}
    for path, data in payloads.items():
        blob(urls[path], emu).upload_blob(data, overwrite=False)
    with big.open("rb") as stream:
        blob(
            urls["dir/big.bin"], emu, max_single_put_size=8 * MiB, max_block_size=8 * MiB
        ).upload_blob(stream, length=big.stat().st_size, overwrite=False, max_concurrency=2)
    counts = emu.stats()["blob_requests"]
    assert counts["PutBlob"] == 3 and counts["PutBlock"] == 9 and counts["PutBlockList"] == 1

    # The listing: sorted by path, PAGE_SIZE at a time, nextLink and continuationToken agree.
    first = history.call("GET", history.base)
    assert first.status_code == 200, first.text
    page = first.json()
    assert set(page) == {"value", "continuationToken", "nextLink"}
    assert [a["path"] for a in page["value"]] == sorted(paths)[:PAGE_SIZE]
    assert page["nextLink"].startswith(history.base + "?continuationToken=")
    by_link = history.call("GET", page["nextLink"]).json()
    by_token = history.call(
        "GET", history.base, params={"continuationToken": page["continuationToken"]}
    ).json()
    assert by_link == by_token
    assert [a["path"] for a in by_link["value"]] == sorted(paths)[PAGE_SIZE:]
    assert by_link["continuationToken"] is None and by_link["nextLink"] is None
    assert all(set(a) >= ARTIFACT_FIELDS for a in page["value"] + by_link["value"])

    # Downloads: read SAS per path, exact bytes back (the big one in parallel ranges).
    for path, data in payloads.items():
        url = history.read_url(path)
        assert sas_fields(url)["sp"] == "r"
        assert blob(url, emu).download_blob().readall() == data
    target = tmp_path / "back.bin"
    with target.open("wb") as out:
        blob(
            history.read_url("dir/big.bin"),
            emu,
            max_single_get_size=8 * MiB,
            max_chunk_get_size=8 * MiB,
        ).download_blob(max_concurrency=3).readinto(out)
    assert _digest(target) == _digest(big)
    assert emu.stats()["blob_requests"]["GetBlob"] >= 3 + 9

    # A directory in one call: raw string prefix, paged the same way.
    listed, url = [], history.base + "/prefix/contentinfo?path=dir/"
    while url:
        answer = history.call("GET", url).json()
        assert all(set(c) == CONTENT_FIELDS for c in answer["value"])
        listed += answer["value"]
        url = answer["nextLink"]
    assert [c["path"] for c in listed] == ["dir/big.bin", "dir/sub/ünï cödé.txt"]
    assert blob(listed[1]["contentUri"], emu).download_blob().readall() == "grüße".encode()


def _digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_artifacts_are_write_once(history: History, emu):
    url = history.upload_urls("model/weights.bin")["model/weights.bin"]
    blob(url, emu).upload_blob(b"v1", overwrite=False)

    again = history.register("model/weights.bin", "model/other.bin")
    assert again.status_code == 200
    body = again.json()
    assert set(body["artifacts"]) == set(body["artifactContentInformation"]) == {"model/other.bin"}
    error = body["errors"]["model/weights.bin"]
    assert ERROR_FIELDS <= set(error) and ROOT_ERROR_FIELDS <= set(error["error"])
    assert error["error"]["code"] == "UserError"
    assert error["error"]["message"] == (
        f"Resource Conflict: ArtifactId ExperimentRun/dcid.{history.run_id}/model/weights.bin "
        "already exists."
    )
    # Registered but never uploaded counts as existing too (AML registers at batch/metadata).
    assert "model/other.bin" in history.register("model/other.bin").json()["errors"]

    # The old write SAS cannot overwrite: the SDK's If-None-Match: * gets BlobAlreadyExists.
    with pytest.raises(ResourceExistsError):
        blob(url, emu).upload_blob(b"v2", overwrite=False)
    assert blob(history.read_url("model/weights.bin"), emu).download_blob().readall() == b"v1"


def test_blob_conditional_headers_and_error_xml(history: History, emu):
    url = history.upload_urls("cond.txt")["cond.txt"]
    ca = emu.info["ca_bundle"]
    put = {"x-ms-blob-type": "BlockBlob", "If-None-Match": "*", "x-ms-version": "2025-11-05"}
    created = requests.put(url, data=b"first", headers=put, verify=ca, timeout=30)
    assert created.status_code == 201, created.text
    for name in ("ETag", "Last-Modified", "Content-MD5", "x-ms-request-id", "x-ms-version"):
        assert created.headers.get(name), name
    assert (
        created.headers["Content-MD5"] == base64.b64encode(hashlib.md5(b"first").digest()).decode()
    )

    conflict = requests.put(url, data=b"second", headers=put, verify=ca, timeout=30)
    assert conflict.status_code == 409
    assert storage_code(conflict) == "BlobAlreadyExists"
    assert conflict.headers["Content-Type"] == "application/xml"
    assert "<Code>BlobAlreadyExists</Code>" in conflict.text
    assert "The specified blob already exists." in conflict.text

    read = history.read_url("cond.txt")
    etag = created.headers["ETag"]
    got = requests.get(read, verify=ca, timeout=30)
    assert got.content == b"first" and got.headers["ETag"] == etag
    ranged = requests.get(read, headers={"x-ms-range": "bytes=1-3"}, verify=ca, timeout=30)
    assert ranged.status_code == 206 and ranged.content == b"irs"
    assert ranged.headers["Content-Range"] == "bytes 1-3/5"
    unchanged = requests.get(read, headers={"If-None-Match": etag}, verify=ca, timeout=30)
    assert unchanged.status_code == 304
    stale = requests.get(read, headers={"If-Match": '"0x8D0"'}, verify=ca, timeout=30)
    assert stale.status_code == 412 and storage_code(stale) == "ConditionNotMet"
    head = requests.head(read, verify=ca, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == "5"
    assert head.headers["x-ms-blob-type"] == "BlockBlob"
    props = blob(read, emu).get_blob_properties()
    assert props.size == 5 and props.etag.strip('"') == etag.strip('"')


def test_sas_is_checked_like_azure_storage(history: History, emu):
    info, ca = emu.info, emu.info["ca_bundle"]
    write = history.upload_urls("secret.txt")["secret.txt"]
    blob(write, emu).upload_blob(b"data", overwrite=False)
    read = history.read_url("secret.txt")
    before = emu.stats()["blob_auth_failures"]

    # Wrong permission, both ways: 403 AuthorizationPermissionMismatch.
    with pytest.raises(HttpResponseError) as caught:
        blob(write, emu).download_blob()
    assert caught.value.error_code == "AuthorizationPermissionMismatch"
    assert caught.value.status_code == 403
    with pytest.raises(HttpResponseError) as caught:
        blob(read, emu).upload_blob(b"x", overwrite=True)
    assert caught.value.error_code == "AuthorizationPermissionMismatch"

    # Expired (signed correctly with the account key): 403 AuthenticationFailed.
    account, container = info["blob_account"], info["blob_container"]
    name = f"ExperimentRun/dcid.{history.run_id}/secret.txt"
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    expired = generate_blob_sas(
        account, container, name, account_key=info["blob_account_key"], permission="r", expiry=past
    )
    answer = requests.get(read.split("?")[0] + "?" + expired, verify=ca, timeout=30)
    assert answer.status_code == 403 and storage_code(answer) == "AuthenticationFailed"
    assert "Signed expiry time" in answer.text
    with pytest.raises(ClientAuthenticationError):
        blob(read.split("?")[0] + "?" + expired, emu).download_blob()

    # Tampered: a read SAS turned into a write SAS, or signed with another key.
    forged = read.replace("sp=r", "sp=rcw")
    answer = requests.get(forged, verify=ca, timeout=30)
    assert answer.status_code == 403 and "Signature did not match" in answer.text
    other = generate_blob_sas(
        account,
        container,
        name,
        account_key="a2V5" * 22,
        permission="r",
        expiry=past + dt.timedelta(hours=2),
    )
    assert requests.get(read.split("?")[0] + "?" + other, verify=ca, timeout=30).status_code == 403
    # No SAS at all.
    bare = requests.get(read.split("?")[0], verify=ca, timeout=30)
    assert bare.status_code == 401 and storage_code(bare) == "NoAuthenticationInformation"
    assert emu.stats()["blob_auth_failures"] >= before + 6
    assert blob(read, emu).download_blob().readall() == b"data"


def test_history_routes_require_a_bearer_and_answer_aml_errors(history: History, emu, token):
    anonymous = History(emu, None, history.experiment, history.run_id)
    before = emu.stats()["auth_failures"]
    for method, suffix, kwargs in (
        ("POST", "/batch/metadata", {"json": {"paths": [{"path": "a"}]}}),
        ("GET", "", {}),
        ("GET", "/contentinfo", {"params": {"path": "a"}}),
        ("GET", "/prefix/contentinfo", {"params": {"path": "a"}}),
    ):
        body = assert_aml_error(
            anonymous.call(method, anonymous.base + suffix, **kwargs), 401, "AuthorizationError"
        )
        assert body["error"]["code"] == "UserError"
    assert emu.stats()["auth_failures"] == before + 4
    assert (
        History(emu, "not-a-jwt", history.experiment, history.run_id)
        .call("GET", history.base)
        .status_code
        == 401
    )

    # Unknown run, wrong experiment, unknown path, bad paths.
    unknown = History(emu, token, history.experiment, uuid.uuid4().hex)
    assert_aml_error(unknown.register("a.txt"), 404, "RunNotFound")
    elsewhere = History(emu, token, "999999", history.run_id)
    assert_aml_error(elsewhere.call("GET", elsewhere.base), 404, "RunNotFound")
    missing = history.call("GET", history.base + "/contentinfo", params={"path": "nope.txt"})
    assert_aml_error(missing, 404, "ArtifactNotFound")
    for bad in ("../escape.txt", "/abs.txt", "a/../b", "a//b", ""):
        assert_aml_error(history.register(bad), 400)
    assert history.call("GET", history.base, params={"continuationToken": "@@"}).status_code == 400

    # The experiments/{name} form reaches the same run, whatever the name holds.
    name = f"team/exp ü {uuid.uuid4().hex[:6]}"
    experiment_id, run_id = make_run(emu, token, name)
    named = History(emu, token, experiment_id, run_id)
    named.upload_urls("x.txt")
    by_name = named.base.replace(
        f"/experimentids/{experiment_id}/", f"/experiments/{quote(name, safe='')}/"
    )
    assert [a["path"] for a in named.call("GET", by_name).json()["value"]] == ["x.txt"]
    assert emu.stats()["history_requests"]["GET /artifacts"] >= 2


def test_faults_reach_history_and_blob_requests(history: History, emu):
    # History: the front door's fault answers with AML's body and Retry-After.
    emu.inject_faults(status=503, count=1, retry_after=1, path_contains="/batch/metadata")
    answer = history.register("faulted.txt")
    assert_aml_error(answer, 503)
    assert answer.headers["Retry-After"] == "1"
    url = history.upload_urls("faulted.txt")["faulted.txt"]

    # Blob: a 503 on the upload is retried by azure-storage-blob and then succeeds.
    emu.reset_stats()
    emu.inject_faults(status=503, count=1, path_contains="dcid.")
    blob(url, emu).upload_blob(b"survived", overwrite=False)
    stats = emu.stats()
    assert stats["faults_injected"] == 1 and stats["blob_requests"]["PutBlob"] == 2
    read = history.read_url("faulted.txt")
    emu.inject_faults(status=500, count=1, path_contains="faulted.txt")
    assert blob(read, emu).download_blob().readall() == b"survived"
    assert emu.stats()["faults_injected"] == 2

    # A fault after storing: the bytes land, the SDK's retry then meets If-None-Match: *.
    url = history.upload_urls("lost.txt")["lost.txt"]
    emu.inject_faults(status=503, count=1, path_contains="lost.txt", when="after")
    with pytest.raises(ResourceExistsError):
        blob(url, emu).upload_blob(b"landed", overwrite=False)
    assert blob(history.read_url("lost.txt"), emu).download_blob().readall() == b"landed"


# -- Azurite as the blob store -----------------------------------------------------------------

AZURITE_SAS_LIFETIME = 4


@pytest.fixture(scope="module")
def azurite_emu(tmp_path_factory: pytest.TempPathFactory):
    from spark_aml_bridge.emulator.azurite import AzuriteError, start_azurite

    try:
        azurite = start_azurite(tmp_path_factory.mktemp("azurite"))
    except AzuriteError as exc:
        if "Node.js" in str(exc):
            pytest.skip(str(exc))
        raise
    try:
        handle = start_emulator(
            tmp_path_factory.mktemp("emu-azurite"),
            timeout=STARTUP_TIMEOUT,
            blob_backend="azurite",
            azurite_url=azurite.url,
            sas_lifetime=AZURITE_SAS_LIFETIME,
        )
        try:
            yield handle, azurite
        finally:
            handle.stop()
    finally:
        azurite.stop()


def test_azurite_backend_round_trip(azurite_emu, tmp_path):
    emu, azurite = azurite_emu
    info = emu.info
    assert info["blob_backend"] == "azurite"
    assert info["blob_endpoint"] == azurite.url and info["blob_account"] == "devstoreaccount1"
    assert info["sas_lifetime"] == AZURITE_SAS_LIFETIME
    experiment_id, run_id = make_run(emu, bearer(emu))
    history = History(emu, bearer(emu), experiment_id, run_id)

    data = os.urandom(5 * MiB + 123)
    urls = history.upload_urls("model/blob.bin", "empty.txt", "late.txt")
    assert urls["model/blob.bin"].startswith(azurite.url + "/azureml/ExperimentRun/dcid.")
    blob(urls["model/blob.bin"], emu, max_single_put_size=MiB, max_block_size=MiB).upload_blob(
        data, overwrite=False, max_concurrency=2
    )
    blob(urls["empty.txt"], emu).upload_blob(b"", overwrite=False)
    # Azurite itself enforces write-once (If-None-Match: *) and the SAS permissions.
    with pytest.raises(ResourceExistsError):
        blob(urls["empty.txt"], emu).upload_blob(b"again", overwrite=False)
    read = history.read_url("model/blob.bin")
    with pytest.raises(HttpResponseError) as caught:
        blob(read, emu).upload_blob(b"x", overwrite=True)
    assert caught.value.status_code == 403
    back = blob(read, emu, max_single_get_size=MiB, max_chunk_get_size=MiB).download_blob(
        max_concurrency=2
    )
    assert back.readall() == data
    assert blob(history.read_url("empty.txt"), emu).download_blob().readall() == b""

    # The SAS lifetime is the emulator's --sas-lifetime, enforced by Azurite (which answers
    # 403 AuthorizationFailure where Azure answers AuthenticationFailed).
    expiry = dt.datetime.fromisoformat(sas_fields(urls["late.txt"])["se"].replace("Z", "+00:00"))
    time.sleep(max(0.0, expiry.timestamp() - time.time()) + 1.2)
    with pytest.raises(HttpResponseError) as caught:
        blob(urls["late.txt"], emu).upload_blob(b"too late", overwrite=False)
    assert caught.value.status_code == 403
