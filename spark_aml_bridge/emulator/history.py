"""Azure ML's run-history artifact service, on the workspace port behind the same front door.

Base `/history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.MachineLearningServices/workspaces/{ws}`, then `/experiments/{experiment id or name}/
runs/{run id}` or its twin `/experimentids/{experiment id}/runs/{run id}`, then:

* `POST …/artifacts/batch/metadata` `{"paths": [{"path": "d/a.txt", "tags": {}}, …]}` registers
  each path and answers `{"artifacts": {path: Artifact}, "artifactContentInformation": {path:
  {"contentUri": <write SAS URL>, …}}, "errors": {path: ErrorResponse}}`, both maps keyed by the
  path strings sent. Run artifacts are write-once: a path registered before (even one whose blob
  upload never happened or failed) is an `errors` entry ("Resource Conflict: ArtifactId … already
  exists.") and gets no content URL. As in AML, registration happens here, not when the blob
  upload completes.
* `GET …/artifacts` lists the run's artifacts (`value`, `continuationToken`, `nextLink`), sorted
  by path, a page at a time (`--artifact-page-size`); `?continuationToken=` continues.
* `GET …/artifacts/contentinfo?path=` answers one content information with a read SAS URL.
* `GET …/artifacts/prefix/contentinfo?path=` answers the content information of every artifact
  whose path starts with the string given (raw string prefix, like a blob listing: pass `dir/`
  for a directory), paged like the listing.

Errors are AML `ErrorResponse` bodies. Registrations live in `<state dir>/history.db`; blob URLs
point at the emulator's blob endpoint or at Azurite (container `azureml`, blob
`ExperimentRun/dcid.<run id>/<path>`, like AML's workspace storage account).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from werkzeug.wrappers import Response

from spark_aml_bridge.emulator.identity import REGION
from spark_aml_bridge.emulator.responses import json_response, utc_now_iso
from spark_aml_bridge.emulator.sas import DOWNLOAD_PERMISSION, UPLOAD_PERMISSION, SasIssuer
from spark_aml_bridge.emulator.stats import Stats

HISTORY_DB = "history.db"
ORIGIN = "ExperimentRun"
DATASTORE = "workspaceartifactstore"
DEFAULT_PAGE_SIZE = 100
MAX_BATCH = 1000
COMPONENT = "run-history"

# The fixed words match case-insensitively, as the real front end does.
HISTORY_PREFIX = re.compile(
    r"^(?P<prefix>/history/v1\.0/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+))(?P<rest>/.*)?$",
    re.IGNORECASE,
)
_RUN_ROUTE = re.compile(
    r"^/(?P<kind>experiments|experimentids)/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)"
    r"/artifacts(?P<op>/batch/metadata|/contentinfo|/prefix/contentinfo)?/?$",
    re.IGNORECASE,
)
_OPERATIONS = {
    ("POST", "/batch/metadata"): "batch_metadata",
    ("GET", ""): "list",
    ("GET", "/contentinfo"): "content_info",
    ("GET", "/prefix/contentinfo"): "prefix_content_info",
}


def error_body(
    code: str,
    message: str,
    inner_code: str,
    message_format: str | None = None,
    parameters: dict[str, str] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """AML's ErrorResponse: `{"error": RootError, "correlation", "environment", …}`."""
    return {
        "error": {
            "code": code,
            "severity": None,
            "message": message,
            "messageFormat": message_format or message,
            "messageParameters": parameters or {},
            "referenceCode": None,
            "detailsUri": None,
            "target": target,
            "details": [],
            "innerError": {"code": inner_code, "innerError": None},
            "debugInfo": None,
            "additionalInfo": None,
        },
        "correlation": {"operation": uuid.uuid4().hex, "request": uuid.uuid4().hex[:16]},
        "environment": REGION,
        "location": REGION,
        "time": utc_now_iso(),
        "componentName": COMPONENT,
    }


def error_response(
    status: int, message: str, inner_code: str, code: str = "UserError", **kwargs: Any
) -> Response:
    body = error_body(code, message, inner_code, **kwargs)
    headers = {"x-ms-response-type": "error", "x-request-id": body["correlation"]["request"]}
    return json_response(body, status, headers)


class HistoryError(Exception):
    def __init__(self, status: int, message: str, inner_code: str, **kwargs: Any) -> None:
        super().__init__(message)
        self.response = error_response(status, message, inner_code, **kwargs)


class ArtifactIndex:
    """Registered run artifacts: (run id, path) → created time, etag, tags. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL, path TEXT NOT NULL, "
            "created_time TEXT NOT NULL, etag TEXT NOT NULL, tags TEXT NOT NULL, "
            "PRIMARY KEY (run_id, path)) WITHOUT ROWID"
        )

    def register(
        self, run_id: str, entries: list[tuple[str, dict[str, str]]]
    ) -> dict[str, dict[str, Any] | None]:
        """Insert each path that is new; returns path → row, or None where it already existed."""
        created = utc_now_iso()
        result: dict[str, dict[str, Any] | None] = {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for path, tags in entries:
                    row = {
                        "path": path,
                        "created_time": created,
                        "etag": f'"{uuid.uuid4()}"',
                        "tags": tags,
                    }
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                        (run_id, path, created, row["etag"], json.dumps(tags)),
                    )
                    result[path] = row if cursor.rowcount == 1 else None
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return result

    def get(self, run_id: str, path: str) -> dict[str, Any] | None:
        rows = self._select("path = ?", (path,), run_id, None, 1)
        return rows[0] if rows else None

    def page(
        self, run_id: str, prefix: str, after: str | None, size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `size` rows with paths starting with `prefix`, after `after`; (rows, more)."""
        where, params = "1", ()
        if prefix:
            where, params = "substr(path, 1, ?) = ?", (len(prefix), prefix)
        rows = self._select(where, params, run_id, after, size + 1)
        return rows[:size], len(rows) > size

    def _select(
        self, where: str, params: tuple[Any, ...], run_id: str, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        sql = f"SELECT path, created_time, etag, tags FROM artifacts WHERE run_id = ? AND {where}"
        args: tuple[Any, ...] = (run_id, *params)
        if after is not None:
            sql += " AND path > ?"
            args += (after,)
        sql += " ORDER BY path LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [
            {"path": p, "created_time": c, "etag": e, "tags": json.loads(t)} for p, c, e, t in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _valid_path(path: Any) -> bool:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    if "\x00" in path or len(path) > 1000:
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


_TOKEN_MARK = "p1."


def _encode_token(path: str) -> str:
    """An opaque continuation token: the last path of the page, base64url-encoded."""
    return _TOKEN_MARK + base64.urlsafe_b64encode(path.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        if not token.startswith(_TOKEN_MARK):
            raise ValueError(token)
        raw = base64.b64decode(token[len(_TOKEN_MARK) :], altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise HistoryError(400, f"Invalid continuation token '{token}'.", "BadArgument") from None


class RunLookup:
    """Which experiment a run belongs to (cached: it never changes), and experiment names."""

    def __init__(
        self, experiment_of: Callable[[str], str | None], name_of: Callable[[str], str | None]
    ) -> None:
        self._experiment_of = experiment_of
        self.name_of = name_of
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def experiment_of(self, run_id: str) -> str | None:
        with self._lock:
            cached = self._cache.get(run_id)
        if cached is None:
            cached = self._experiment_of(run_id)
            if cached is not None:
                with self._lock:
                    if len(self._cache) > 10000:
                        self._cache.clear()
                    self._cache[run_id] = cached
        return cached


class HistoryApp:
    """WSGI app for `/history/v1.0/…` requests that passed the workspace's front door."""

    def __init__(
        self,
        index: ArtifactIndex,
        issuer: SasIssuer,
        container: str,
        run_lookup: RunLookup,
        workspace_url: str,
        stats: Stats,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.index = index
        self.issuer = issuer
        self.container = container
        self.run_lookup = run_lookup
        self.workspace_url = workspace_url.rstrip("/")
        self.stats = stats
        self.page_size = page_size

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            response = self.dispatch(environ)
        except HistoryError as error:
            response = error.response
        return response(environ, start_response)

    # -- routing --------------------------------------------------------------------------------
    def dispatch(self, environ: dict[str, Any]) -> Response:
        raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0]
        if not raw_path:
            raw_path = quote(environ.get("PATH_INFO", ""))
        prefix = HISTORY_PREFIX.match(raw_path)
        route = _RUN_ROUTE.match(prefix["rest"] or "") if prefix else None
        method = environ["REQUEST_METHOD"]
        operation = (
            _OPERATIONS.get((method, (route["op"] or "").lower())) if route is not None else None
        )
        label = f"{method} /artifacts{(route['op'] or '').lower()}" if route else f"{method} ?"
        self.stats.count_in("history_requests", label)
        if route is None or operation is None:
            raise HistoryError(
                404 if route is None else 405,
                f"No route matches '{method} {unquote(raw_path)}'.",
                "NotFound" if route is None else "MethodNotAllowed",
            )
        run_id = unquote(route["run"])
        experiment = unquote(route["experiment"])
        self._check_run(route["kind"].lower(), experiment, run_id)
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), True).items()}
        page_url = self.workspace_url + raw_path
        if operation == "batch_metadata":
            return self._batch_metadata(run_id, _json_body(environ))
        if operation == "list":
            return self._list(run_id, query, page_url)
        if operation == "content_info":
            return self._content_info(run_id, query)
        return self._prefix_content_info(run_id, query, page_url)

    def _check_run(self, kind: str, experiment: str, run_id: str) -> None:
        experiment_id = self.run_lookup.experiment_of(run_id)
        if experiment_id is not None:
            if experiment == experiment_id or (
                kind == "experiments" and experiment == self.run_lookup.name_of(experiment_id)
            ):
                return
        raise HistoryError(
            404,
            f"Run {run_id} was not found in experiment {experiment}.",
            "RunNotFound",
            message_format="Run {runId} was not found in experiment {experiment}.",
            parameters={"runId": run_id, "experiment": experiment},
        )

    # -- shapes ---------------------------------------------------------------------------------
    def _container(self, run_id: str) -> str:
        return f"dcid.{run_id}"

    def _blob_name(self, run_id: str, path: str) -> str:
        return f"{ORIGIN}/{self._container(run_id)}/{path}"

    def _artifact(self, run_id: str, row: dict[str, Any]) -> dict[str, Any]:
        blob = self._blob_name(run_id, row["path"])
        return {
            "artifactId": blob,
            "origin": ORIGIN,
            "container": self._container(run_id),
            "path": row["path"],
            "etag": row["etag"],
            "createdTime": row["created_time"],
            "dataPath": {"dataStoreName": DATASTORE, "relativePath": blob, "sqlDataPath": None},
            "tags": row["tags"],
        }

    def _content(self, run_id: str, row: dict[str, Any], permission: str) -> dict[str, Any]:
        blob = self._blob_name(run_id, row["path"])
        return {
            "contentUri": self.issuer.url(self.container, blob, permission),
            "origin": ORIGIN,
            "container": self._container(run_id),
            "path": row["path"],
            "tags": row["tags"],
        }

    # -- operations -----------------------------------------------------------------------------
    def _batch_metadata(self, run_id: str, body: Any) -> Response:
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list):
            raise HistoryError(
                400, 'The request body must be {"paths": [{"path": …}, …]}.', "BadArgument"
            )
        if len(paths) > MAX_BATCH:
            raise HistoryError(
                400, f"At most {MAX_BATCH} paths per batch (got {len(paths)}).", "BadArgument"
            )
        entries: dict[str, dict[str, str]] = {}
        for item in paths:
            path = item.get("path") if isinstance(item, dict) else None
            tags = (item.get("tags") if isinstance(item, dict) else None) or {}
            if not _valid_path(path):
                raise HistoryError(
                    400,
                    f"Invalid artifact path {path!r}: a relative path with '/' separators, "
                    "no empty, '.' or '..' segments.",
                    "BadArgument",
                    target="path",
                )
            if not isinstance(tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
            ):
                raise HistoryError(
                    400, f"Tags of {path!r} must map strings to strings.", "BadArgument"
                )
            entries.setdefault(path, tags)
        registered = self.index.register(run_id, list(entries.items()))
        artifacts, contents, errors = {}, {}, {}
        for path, row in registered.items():
            if row is None:
                artifact_id = self._blob_name(run_id, path)
                errors[path] = error_body(
                    "UserError",
                    f"Resource Conflict: ArtifactId {artifact_id} already exists.",
                    "ResourceConflict",
                    message_format="Resource Conflict: ArtifactId {artifactId} already exists.",
                    parameters={"artifactId": artifact_id},
                )
                continue
            artifacts[path] = self._artifact(run_id, row)
            contents[path] = self._content(run_id, row, UPLOAD_PERMISSION)
        return json_response(
            {"artifacts": artifacts, "artifactContentInformation": contents, "errors": errors}
        )

    def _paged(
        self, run_id: str, prefix: str, query: dict[str, str], page_url: str, make: Callable
    ) -> Response:
        token = query.get("continuationToken") or None
        after = _decode_token(token) if token else None
        rows, more = self.index.page(run_id, prefix, after, self.page_size)
        next_token = _encode_token(rows[-1]["path"]) if more and rows else None
        next_link = None
        if next_token:
            params = {k: v for k, v in query.items() if k != "continuationToken"}
            params["continuationToken"] = next_token
            next_link = f"{page_url}?{urlencode(params)}"
        return json_response(
            {
                "value": [make(run_id, row) for row in rows],
                "continuationToken": next_token,
                "nextLink": next_link,
            }
        )

    def _list(self, run_id: str, query: dict[str, str], page_url: str) -> Response:
        return self._paged(run_id, "", query, page_url, self._artifact)

    def _content_info(self, run_id: str, query: dict[str, str]) -> Response:
        path = query.get("path")
        if not path:
            raise HistoryError(400, "The query parameter 'path' is required.", "BadArgument")
        row = self.index.get(run_id, path)
        if row is None:
            artifact_id = self._blob_name(run_id, path)
            raise HistoryError(
                404,
                f"ArtifactId {artifact_id} was not found.",
                "ArtifactNotFound",
                message_format="ArtifactId {artifactId} was not found.",
                parameters={"artifactId": artifact_id},
            )
        return json_response(self._content(run_id, row, DOWNLOAD_PERMISSION))

    def _prefix_content_info(self, run_id: str, query: dict[str, str], page_url: str) -> Response:
        prefix = query.get("path") or ""
        return self._paged(
            run_id,
            prefix,
            query,
            page_url,
            lambda run, row: self._content(run, row, DOWNLOAD_PERMISSION),
        )


def _json_body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    data = stream.read(length) if length else stream.read()
    try:
        return json.loads(data or b"null")
    except ValueError:
        raise HistoryError(400, "The request body is not valid JSON.", "BadArgument") from None


def run_lookup_from_mlflow(ids: Any = None) -> RunLookup:
    """Find runs (and their experiment's id and name) in the in-process MLflow tracking store.

    With `ids` (an `AmlIds`), run and experiment ids are the workspace's GUIDs; MLflow's own ids
    are then unknown here, as on Azure ML.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    from spark_aml_bridge.emulator.aml_ids import EXPERIMENT, RUN

    def experiment_of(run_id: str) -> str | None:
        mlflow_id = run_id if ids is None else ids.to_mlflow(RUN, run_id)
        if mlflow_id is None:
            return None
        try:
            experiment_id = str(_get_tracking_store().get_run(mlflow_id).info.experiment_id)
        except MlflowException:
            return None
        return experiment_id if ids is None else ids.to_aml(EXPERIMENT, experiment_id)

    def name_of(experiment_id: str) -> str | None:
        mlflow_id = experiment_id if ids is None else ids.to_mlflow(EXPERIMENT, experiment_id)
        if mlflow_id is None:
            return None
        try:
            return _get_tracking_store().get_experiment(mlflow_id).name
        except MlflowException:
            return None

    return RunLookup(experiment_of, name_of)
