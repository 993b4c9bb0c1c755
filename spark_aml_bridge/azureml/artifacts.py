"""The ``azureml`` artifact repository: AML's run-history artifact service plus blob SAS URLs.

AML keeps run artifacts behind its run-history service: a batch-metadata call registers paths
and returns a write SAS URL per path, the bytes go to Azure Storage with azure-storage-blob, and
reads ask for a read SAS per path. Credentials come from the workspace session of the artifact
URI's host, not from the current tracking URI, so a workspace run's artifacts stay readable
after ``disconnect()`` or while MLflow tracks elsewhere. AML artifacts are write-once.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests
from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from spark_aml_bridge.azureml.auth import bearer_auth
from spark_aml_bridge.azureml.rewrites import (
    VERSIONS_DIR,
    is_bookkeeping,
    newest_version,
    version_path,
)

_log = logging.getLogger(__name__)

_RUN_ARTIFACTS = re.compile(
    r"/experiments/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/artifacts(?:/(?P<path>.*))?$"
)
BATCH_SIZE = int(os.environ.get("AZUREML_ARTIFACT_BATCH_SIZE", "50"))
_UPLOAD_THREADS = 8
_TIMEOUT = (15, 300)
_READ_PIECE = 1024 * 1024  # bytes per read from a blob download stream


class WriteOnceError(MlflowException):
    """AML run artifacts cannot be overwritten."""


def _http() -> requests.Session:
    session = requests.Session()
    # Retry throttling and transient failures (Retry-After honoured); POST batch/metadata too,
    # since AML's front door rejects it before applying it on 429/503.
    retry = Retry(
        total=6,
        backoff_factor=0.5,
        status_forcelist=(408, 429, 500, 502, 503, 504),
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    return session


_sessions = threading.local()
_blob_lock = threading.Lock()
_blob_http: requests.Session | None = None


def _blob_session() -> requests.Session:
    global _blob_http
    with _blob_lock:
        if _blob_http is None:
            _blob_http = requests.Session()
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=32)
            _blob_http.mount("https://", adapter)
            _blob_http.mount("http://", adapter)
        return _blob_http


def _thread_http() -> requests.Session:
    http = getattr(_sessions, "http", None)
    if http is None:
        http = _sessions.http = _http()
    return http


class AzureMLArtifactRepository(ArtifactRepository):
    """Run artifacts of an Azure ML workspace: ``azureml://…/experiments/E/runs/R/artifacts[/p]``."""

    def __init__(self, artifact_uri: str, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(artifact_uri, *args, **kwargs)
        except TypeError:  # MLflow 2 takes only the URI
            super().__init__(artifact_uri)
        from spark_aml_bridge.session import session_for_store_uri

        match = _RUN_ARTIFACTS.search(artifact_uri.split("?", 1)[0])
        if match is None:
            raise MlflowException(
                f"'{artifact_uri}' is not an Azure ML run artifact URI; expected "
                "azureml://<host>/mlflow/v2.0/subscriptions/…/workspaces/<ws>/experiments/<id>/"
                "runs/<run-id>/artifacts[/<path>]"
            )
        self.run_id = match.group("run")
        self.experiment_id = match.group("experiment")
        self._root = (match.group("path") or "").strip("/")
        self._workspace = session_for_store_uri(artifact_uri)
        address = self._workspace.address
        self._base = (
            f"{address.history_base}/experimentids/{quote(self.experiment_id)}"
            f"/runs/{quote(self.run_id)}/artifacts"
        )
        self._verify: Any = self._workspace.ca_bundle or True
        self._listing: list[str] | None = None  # memo while a download runs
        self._urls: dict[str, str] = {}  # read URLs by path, while a download runs

    # -- writing --------------------------------------------------------------------------------
    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        name = os.path.basename(local_file)
        self._upload([(local_file, self._remote(artifact_path, name))])

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        pairs = []
        for directory, _, files in os.walk(local_dir):
            relative = os.path.relpath(directory, local_dir)
            for name in files:
                inner = name if relative == "." else posixpath.join(*relative.split(os.sep), name)
                pairs.append((os.path.join(directory, name), self._remote(artifact_path, inner)))
        with tempfile.TemporaryDirectory() as scratch:
            self._upload([self._portable_mlmodel(pair, scratch) for pair in pairs])

    def _portable_mlmodel(self, pair: tuple[str, str], scratch: str) -> tuple[str, str]:
        """An MLflow 3 model logged in this run is stored in the MLflow 2 layout every client
        reads: its MLmodel names the run folder and no logged-model id (which plain clients
        would look up in the workspace's logged-model API, and Azure ML has none)."""
        local, remote = pair
        if posixpath.basename(remote) != "MLmodel":
            return pair
        import yaml

        with open(local, encoding="utf-8") as stream:
            meta = yaml.safe_load(stream)
        folder = posixpath.dirname(remote)
        if not isinstance(meta, dict) or meta.get("run_id") != self.run_id or not folder:
            return pair
        if "model_id" not in meta and meta.get("artifact_path") == folder:
            return pair
        meta.pop("model_id", None)
        meta["artifact_path"] = folder
        portable = os.path.join(scratch, "MLmodel")
        with open(portable, "w", encoding="utf-8") as out:
            yaml.safe_dump(meta, out, default_flow_style=False)
        return portable, remote

    def _remote(self, artifact_path: str | None, name: str) -> str:
        parts = [p for p in (self._root, (artifact_path or "").strip("/"), name) if p]
        path = posixpath.normpath(posixpath.join(*parts))
        if path.startswith("..") or path.startswith("/"):
            raise MlflowException(f"artifact path '{path}' leaves the run's artifact root")
        return path

    def _upload(self, pairs: list[tuple[str, str]]) -> None:
        """Register paths in batches, then upload the bytes in parallel; all or an error."""
        if not pairs:
            return
        jobs: list[tuple[str, str, str]] = []
        for start in range(0, len(pairs), BATCH_SIZE):
            batch = pairs[start : start + BATCH_SIZE]
            targets = self._register([remote for _, remote in batch])
            jobs.extend((local, remote, targets[remote]) for local, remote in batch)
        if len(jobs) == 1:
            self._put_blob(*jobs[0])
            return
        from spark_aml_bridge.progress import for_transfer

        sizes = [os.path.getsize(local) for local, _, _ in jobs]
        progress = for_transfer("uploading artifacts", sizes)
        try:
            with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(jobs))) as pool:
                futures = [pool.submit(self._put_blob, *job) for job in jobs]
                for future, size in zip(futures, sizes, strict=True):
                    future.result()  # the first failure is raised: never a silent partial upload
                    if progress is not None:
                        progress.advance(1, size)
        finally:
            if progress is not None:
                progress.close()

    def _register(self, paths: list[str]) -> dict[str, str]:
        """Upload URLs per path; a path that exists already gets a new version (rewrites.py)."""
        targets, conflicts = self._register_once(paths)
        if conflicts:
            _log.info(
                "Azure ML run artifacts are write-once: keeping the new content of %s as a newer "
                "version (read through the bridge; other clients see it under %s)",
                ", ".join(conflicts[:3]) + (" …" if len(conflicts) > 3 else ""),
                ".spark_aml_bridge/versions/",
            )
            versions = {path: version_path(path) for path in conflicts}
            more, clash = self._register_once(list(versions.values()))
            if clash:
                raise WriteOnceError(
                    f"Azure ML run artifacts are write-once and a new version of {clash[0]} "
                    f"could not be registered in run {self.run_id}; log it again."
                )
            targets.update({path: more[versions[path]] for path in conflicts})
        return targets

    def _register_once(self, paths: list[str]) -> tuple[dict[str, str], list[str]]:
        body = {"paths": [{"path": p} for p in paths]}
        answer = self._call("POST", "/batch/metadata", json=body)
        errors = answer.get("errors") or {}
        conflicts = [p for p, e in errors.items() if "already exists" in _error_text(e)]
        others = [p for p in errors if p not in conflicts]
        if others:
            raise MlflowException(
                f"the workspace refused artifact '{others[0]}': {_error_text(errors[others[0]])}"
            )
        content = answer.get("artifactContentInformation") or {}
        wanted = [p for p in paths if p not in conflicts]
        missing = [p for p in wanted if not (content.get(p) or {}).get("contentUri")]
        if missing:
            raise MlflowException(f"the workspace returned no upload URL for {missing[:3]}")
        return {p: content[p]["contentUri"] for p in wanted}, conflicts

    def _put_blob(self, local_file: str, remote: str, content_uri: str) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        blob = self._blob(content_uri)
        try:
            with open(local_file, "rb") as stream:
                blob.upload_blob(
                    stream,
                    length=os.path.getsize(local_file),
                    overwrite=False,  # If-None-Match: *, as AML's own client does
                    max_concurrency=4,
                )
        except ResourceExistsError:
            raise WriteOnceError(
                f"Azure ML run artifacts are write-once: '{remote}' already exists in run "
                f"{self.run_id}. Log under another artifact path, or in a new run."
            ) from None
        except HttpResponseError as exc:
            if exc.status_code != 403:  # Azure: AuthenticationFailed; Azurite: AuthorizationFailure
                raise
            raise MlflowException(
                f"uploading '{remote}' was refused by storage ({_first_line(exc)}); the upload URL "
                "may have expired — log the artifact again under a new path"
            ) from None

    # -- reading --------------------------------------------------------------------------------
    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        wanted = self._full(path)
        prefix = f"{wanted}/" if wanted else ""
        children: dict[str, bool] = {}
        for full in self._all_paths():
            if prefix and not full.startswith(prefix):
                continue
            if is_bookkeeping(full) and not is_bookkeeping(wanted):
                continue  # the bridge's own records (rewritten versions, model records)
            rest = full[len(prefix) :]
            if not rest:
                continue
            head, sep, _ = rest.partition("/")
            children[head] = children.get(head, False) or bool(sep)
        base = _relative(path)
        return [
            FileInfo(posixpath.join(base, name) if base else name, is_dir, None)
            for name, is_dir in sorted(children.items())
        ]

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        artifact_path = _relative(artifact_path)  # MLflow treats "." as the root
        # One prefix listing with read URLs (of the subtree and of its rewritten versions)
        # instead of the run's whole listing plus a content-info call per file.
        full = self._full(artifact_path)
        urls = self._read_urls_under(full)
        if full and not is_bookkeeping(full):
            urls.update(self._read_urls_under(f"{VERSIONS_DIR}/{full}"))
        self._listing, self._urls = list(urls), urls
        try:
            return super().download_artifacts(artifact_path, dst_path)
        finally:
            self._listing, self._urls = None, {}

    def read_files(self, path: str) -> dict[str, bytes]:
        """Every file under the folder `path` (small files: held in memory), by path below it.

        One prefix listing with read URLs, then the blobs in parallel."""
        full = self._full(path)
        prefix = f"{full}/" if full else ""
        urls = self._read_urls_under(prefix)
        if not urls:
            return {}

        def read(uri: str) -> bytes:
            return self._blob(uri).download_blob().readall()

        with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
            contents = list(pool.map(read, urls.values()))
        return {p[len(prefix) :]: data for p, data in zip(urls, contents, strict=True)}

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        from azure.core.exceptions import ClientAuthenticationError

        remote = self._full(remote_file_path)
        if not is_bookkeeping(remote):
            listing = self._listing if self._listing is not None else list(self._all_paths())
            remote = newest_version(remote, listing)  # a rewritten file reads as its newest
        for attempt in (1, 2):
            known = self._urls.get(remote) if attempt == 1 else None
            uri = known or self._content_uri(remote)
            try:
                with open(local_path, "wb") as out:
                    self._blob(uri).download_blob(max_concurrency=4).readinto(out)
                return
            except ClientAuthenticationError:
                if attempt == 2:
                    raise
                _log.info(
                    "read URL for '%s' was refused (expired?); asking for a fresh one", remote
                )

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        raise MlflowException(
            "Azure ML does not support deleting run artifacts (they are write-once); delete the "
            "run instead"
        )

    # -- helpers --------------------------------------------------------------------------------
    def _full(self, path: str | None) -> str:
        parts = [p for p in (self._root, _relative(path)) if p]
        return posixpath.join(*parts) if parts else ""

    def _all_paths(self) -> Iterator[str]:
        if self._listing is not None:
            yield from self._listing
            return
        token: str | None = None
        while True:
            params = {"continuationToken": token} if token else None
            page = self._call("GET", "", params=params)
            for artifact in page.get("value") or []:
                yield artifact["path"]
            token = page.get("continuationToken")
            if not token:
                return

    def _read_urls_under(self, prefix: str) -> dict[str, str]:
        """Read URLs of every artifact whose path starts with the string `prefix` (AML's
        prefix content-info route, a page at a time)."""
        urls: dict[str, str] = {}
        token: str | None = None
        while True:
            params = {"path": prefix}
            if token:
                params["continuationToken"] = token
            page = self._call("GET", "/prefix/contentinfo", params=params)
            for info in page.get("value") or []:
                urls[info["path"]] = info["contentUri"]
            token = page.get("continuationToken")
            if not token:
                return urls

    def _content_uri(self, remote: str) -> str:
        try:
            info = self._call("GET", "/contentinfo", params={"path": remote})
        except MlflowException as exc:
            if "404" not in str(exc):
                raise
            available = sorted(self._all_paths())[:10]
            raise MlflowException(
                f"File with path {remote} was not found in run {self.run_id}; available files "
                f"include: {', '.join(available) or 'none'}",
                error_code="RESOURCE_DOES_NOT_EXIST",
            ) from None
        return info["contentUri"]

    def _blob(self, content_uri: str) -> Any:
        from azure.core.pipeline.transport import RequestsTransport
        from azure.storage.blob import BlobClient, ExponentialRetry

        # The SDK's default first retry waits ~15 s; storage hiccups deserve quicker retries.
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=6)
        # One pooled HTTP session for every blob: a client per file must not mean a TLS
        # handshake per file (1,000 small files: ~2x faster). Downloads are read in 1 MiB
        # pieces, not azure-core's default 4 KiB (100 MB: 25,600 Python reads; ~2x slower).
        transport = RequestsTransport(
            session=_blob_session(),
            session_owner=False,
            connection_verify=self._verify,
            connection_data_block_size=_READ_PIECE,
        )
        return BlobClient.from_blob_url(content_uri, retry_policy=retry, transport=transport)

    def _call(self, method: str, suffix: str, **kwargs: Any) -> dict[str, Any]:
        url = self._base + suffix
        try:
            response = _thread_http().request(
                method, url, auth=bearer_auth(), verify=self._verify, timeout=_TIMEOUT, **kwargs
            )
        except requests.RequestException as exc:
            raise MlflowException(
                f"the workspace's artifact service did not answer: {_first_line(exc)}"
            ) from None
        if response.status_code == 404:
            raise MlflowException(
                f"404 from the artifact service for run {self.run_id}: {_body_message(response)}",
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        if response.status_code >= 400:
            raise MlflowException(
                f"the workspace's artifact service answered HTTP {response.status_code}: "
                f"{_body_message(response)}"
            )
        return response.json()


def _relative(path: str | None) -> str:
    """A run-relative artifact path: "", ".", "./" and "/" all mean the root."""
    cleaned = posixpath.normpath((path or "").strip("/")) if (path or "").strip("/") else ""
    return "" if cleaned == "." else cleaned


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return f"{inner.get('code', '')}: {inner.get('message', '')}".strip(": ")
    return str(error)


def _body_message(response: requests.Response) -> str:
    try:
        return _error_text(response.json())[:300]
    except ValueError:
        return (response.text or "")[:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
