"""The emulator's blob endpoint: the part of Azure Blob Storage that `BlobClient` uses.

Its own HTTPS port (its own "host"), path-style URLs as Azurite serves them:
`https://127.0.0.1:<port>/<account>/<container>/<blob name>?<SAS>`. Implemented: Put Blob
(`x-ms-blob-type: BlockBlob`), Put Block, Put Block List, Get Blob (whole or `x-ms-range`/`Range`,
so parallel ranged downloads work) and Get Blob Properties (HEAD), with `If-Match`/`If-None-Match`
(`If-None-Match: *` on a write of an existing blob: 409 BlobAlreadyExists), Azure Storage error
XML plus `x-ms-error-code`, and `ETag`, `Last-Modified`, `Content-MD5`, `x-ms-request-id`,
`x-ms-version` headers. Only SAS authorization (see sas.py); the emulator hands out SAS URLs
for the one container `azureml`, as Azure ML keeps run artifacts in its workspace storage
account's `azureml` container under `ExperimentRun/dcid.<run id>/<path>`.

Azure ML's own MLflow plugin downloads only from `https://<account>.blob.<storage suffix>/…` hosts
(it silently skips any other); clients built on azure-storage-blob, as this project's, accept
these path-style loopback URLs, which is all the emulator needs to serve.

Bytes are streamed to disk under `<state dir>/blobs/`: one directory per committed blob
(`data` plus `meta.json`, named by a hash of the blob name, so `a` and `a/b` can coexist),
staged blocks beside it until Put Block List commits them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from spark_aml_bridge.emulator.faults import Faults
from spark_aml_bridge.emulator.sas import BlobAccount, SasRejected, verify_sas
from spark_aml_bridge.emulator.stats import Stats

_log = logging.getLogger("spark_aml_bridge.emulator.blobs")

BLOBS_DIR = "blobs"
ARTIFACT_CONTAINER = "azureml"
DEFAULT_VERSION = "2025-11-05"
_CHUNK = 1024 * 1024
_MAX_BLOCK_LIST = 8 * 1024 * 1024
_MAX_BLOB_NAME = 1024

# Azure Storage's own messages for the codes this endpoint answers with.
_MESSAGES = {
    "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of "
    "Authorization header is formed correctly including the signature.",
    "AuthorizationPermissionMismatch": "This request is not authorized to perform this "
    "operation using this permission.",
    "AuthorizationProtocolMismatch": "This request is not authorized to perform this operation "
    "using this protocol.",
    "AuthorizationSourceIPMismatch": "This request is not authorized to perform this operation "
    "using this source IP.",
    "NoAuthenticationInformation": "Server failed to authenticate the request. Please refer to "
    "the information in the www-authenticate header.",
    "BlobAlreadyExists": "The specified blob already exists.",
    "BlobNotFound": "The specified blob does not exist.",
    "ContainerNotFound": "The specified container does not exist.",
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "InvalidBlockList": "The specified block list is invalid.",
    "InvalidBlockId": "The specified blob or block content is invalid.",
    "InvalidXmlDocument": "XML specified is not syntactically valid.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the "
    "request URI is invalid.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "MissingRequiredHeader": "An HTTP header that's mandatory for this request is not specified.",
    "Md5Mismatch": "The MD5 value specified in the request did not match with the MD5 value "
    "calculated by the server.",
    "InvalidUri": "The requested URI does not represent any resource on the server.",
    "UnsupportedHttpVerb": "The resource doesn't support specified Http Verb.",
    "ServerBusy": "The server is busy.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
    "OperationTimedOut": "The operation could not be completed within the permitted time.",
}
_FAULT_CODES = {
    400: "InvalidInput",
    403: "AuthenticationFailed",
    404: "BlobNotFound",
    409: "BlobAlreadyExists",
    412: "ConditionNotMet",
    429: "ServerBusy",
    500: "InternalError",
    503: "ServerBusy",
    504: "OperationTimedOut",
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_CONTENT_HEADERS = {
    # blob property: (Put Blob request header, Put Block List request header, response header)
    "content_type": ("Content-Type", "x-ms-blob-content-type", "Content-Type"),
    "content_encoding": ("Content-Encoding", "x-ms-blob-content-encoding", "Content-Encoding"),
    "content_language": ("Content-Language", "x-ms-blob-content-language", "Content-Language"),
    "content_disposition": (None, "x-ms-blob-content-disposition", "Content-Disposition"),
    "cache_control": (None, "x-ms-blob-cache-control", "Cache-Control"),
}
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class BlobError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def _http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def _new_etag() -> str:
    # Azure's shape: "0x8D" + 13 hex digits, quoted.
    return f'"0x8D{secrets.token_hex(7)[:13].upper()}"'


def _b64_md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _hashed(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


class BlobStore:
    """Committed blobs and staged blocks on disk; commits are atomic renames under a lock."""

    def __init__(self, root: Path, account: str) -> None:
        self.root = root / account
        self.tmp = root / ".tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # -- layout ---------------------------------------------------------------------------------
    def create_container(self, container: str) -> None:
        (self.root / container / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / container / "staged").mkdir(parents=True, exist_ok=True)

    def has_container(self, container: str) -> bool:
        return (self.root / container / "blobs").is_dir()

    def _blob_dir(self, container: str, name: str) -> Path:
        digest = _hashed(name)
        return self.root / container / "blobs" / digest[:2] / digest

    def _staged_dir(self, container: str, name: str) -> Path:
        return self.root / container / "staged" / _hashed(name)

    # -- reading --------------------------------------------------------------------------------
    def properties(self, container: str, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._blob_dir(container, name) / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def open(self, container: str, name: str) -> tuple[dict[str, Any], Any] | None:
        """(properties, open data file) of one committed version, or None."""
        with self._lock:  # never the meta of one version and the data of another
            meta = self.properties(container, name)
            if meta is None:
                return None
            try:
                handle = open(self._blob_dir(container, name) / "data", "rb")
            except OSError:
                return None
        return meta, handle

    # -- writing --------------------------------------------------------------------------------
    def receive(self, stream: Any, length: int | None) -> tuple[Path, int, bytes]:
        """Stream a request body into a temp file: (path, size, md5 digest)."""
        md5 = hashlib.md5()
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="body-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while length is None or size < length:
                    want = _CHUNK if length is None else min(_CHUNK, length - size)
                    chunk = stream.read(want)
                    if not chunk:
                        break
                    out.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        if length is not None and size < length:
            Path(name).unlink(missing_ok=True)
            raise ConnectionError("request body ended early")
        return Path(name), size, md5.digest()

    def commit(
        self,
        container: str,
        name: str,
        data: Path,
        meta: dict[str, Any],
        check: Callable[[dict[str, Any] | None], None],
    ) -> dict[str, Any]:
        """Make `data` the blob's content; `check(current props)` may raise to refuse it."""
        target = self._blob_dir(container, name)
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix="commit-"))
        try:
            os.replace(data, staging / "data")
            with self._lock:
                current = self.properties(container, name)
                check(current)
                now = time.time()
                meta = {
                    **meta,
                    "name": name,
                    "etag": _new_etag(),
                    "last_modified": now,
                    "created": current["created"] if current else now,
                }
                (staging / "meta.json").write_text(json.dumps(meta))
                target.parent.mkdir(parents=True, exist_ok=True)
                if current is not None or target.exists():
                    old = Path(tempfile.mkdtemp(dir=self.tmp, prefix="old-"))
                    os.replace(target, old / "blob")
                    shutil.rmtree(old, ignore_errors=True)
                os.replace(staging, target)
            return meta
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
            Path(data).unlink(missing_ok=True)

    def stage_block(self, container: str, name: str, block_id: str, data: Path) -> None:
        directory = self._staged_dir(container, name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "name").write_text(name)
        os.replace(data, directory / _hashed(block_id))

    def assemble(self, container: str, name: str, block_ids: list[str]) -> tuple[Path, int]:
        """Concatenate staged blocks into a temp file; BlobError if one is missing."""
        directory = self._staged_dir(container, name)
        parts = [directory / _hashed(block_id) for block_id in block_ids]
        missing = [b for b, p in zip(block_ids, parts, strict=True) if not p.is_file()]
        if missing:
            raise BlobError(
                400, "InvalidBlockList", f"Block {missing[0]!r} is not staged for this blob."
            )
        fd, out_name = tempfile.mkstemp(dir=self.tmp, prefix="assembled-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as block:
                        _append(block, out)
                size = out.tell()
        except BaseException:
            Path(out_name).unlink(missing_ok=True)
            raise
        return Path(out_name), size

    def discard_blocks(self, container: str, name: str) -> None:
        shutil.rmtree(self._staged_dir(container, name), ignore_errors=True)


def _append(source: Any, out: Any) -> None:
    """Copy a whole file to the end of `out`: in the kernel where it can (Azure commits a
    block list without moving bytes; a copy through Python made Put Block List of 100 MB take
    a quarter of a second here), else in 64 KiB pieces."""
    out.flush()
    left = os.fstat(source.fileno()).st_size
    try:
        while left > 0:
            copied = os.copy_file_range(source.fileno(), out.fileno(), left)
            if copied == 0:
                break
            left -= copied
        if left == 0:
            return
    except (AttributeError, OSError):
        pass
    out.seek(0, os.SEEK_END)
    shutil.copyfileobj(source, out, 64 * 1024)


def _parse_path(path: str) -> tuple[str, str, str]:
    """(account, container, blob name) of a path-style URL path (already percent-decoded)."""
    parts = path.lstrip("/").split("/", 2)
    if len(parts) < 3 or not all(parts) or len(parts[2]) > _MAX_BLOB_NAME:
        raise BlobError(400, "InvalidUri")
    return parts[0], parts[1], parts[2]


def _decoded_path(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return unquote(raw.split("?", 1)[0], errors="strict")
    return environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")


def _operation(method: str, query: dict[str, str], headers: dict[str, str]) -> str:
    comp = query.get("comp")
    if method == "PUT":
        if comp == "block":
            return "PutBlock"
        if comp == "blocklist":
            return "PutBlockList"
        if comp is None:
            return "PutBlob"
    elif method in ("GET", "HEAD") and comp is None:
        return "GetBlob" if method == "GET" else "GetBlobProperties"
    elif method == "DELETE" and comp is None:
        return "DeleteBlob"
    return "Unsupported"


_NEEDED = {
    "PutBlob": "cw",
    "PutBlock": "cw",
    "PutBlockList": "cw",
    "GetBlob": "r",
    "GetBlobProperties": "r",
    "DeleteBlob": "d",
}


class BlobApp:
    """WSGI app for the blob port."""

    def __init__(
        self, store: BlobStore, account: BlobAccount, faults: Faults, stats: Stats
    ) -> None:
        self.store = store
        self.account = account
        self.faults = faults
        self.stats = stats

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        request = _Request(environ, headers)
        path = ""
        try:
            try:
                path = _decoded_path(environ)
            except UnicodeDecodeError:
                raise BlobError(400, "InvalidUri") from None
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), True).items()}
            operation = _operation(environ["REQUEST_METHOD"], query, headers)
            self.stats.count_in("blob_requests", operation)
            route = path + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
            fault = self.faults.take(route)
            if fault is not None:
                self.stats.count("faults_injected")
                if fault.when == "after":
                    try:
                        _close(self._handle(request, path, query, operation)[2])
                    except BlobError:
                        pass
                retry_after = fault.retry_after
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                raise BlobError(
                    fault.status,
                    _FAULT_CODES.get(fault.status, "InternalError"),
                    f"Injected fault: HTTP {fault.status} ({fault.when} the request reached "
                    "storage).",
                    extra,
                )
            status, out_headers, body = self._handle(request, path, query, operation)
        except BlobError as error:
            request.drain()
            status, out_headers, body = self._error(request, error)
        except (ConnectionError, TimeoutError):
            raise  # the client went away: the server drops the connection
        except OSError:
            _log.exception("blob request failed: %s %s", environ["REQUEST_METHOD"], path)
            request.drain()
            status, out_headers, body = self._error(request, BlobError(500, "InternalError"))
        out_headers = {**self._common(request), **out_headers}
        start_response(f"{status} {_STATUS_TEXT.get(status, 'Unknown')}", list(out_headers.items()))
        if environ["REQUEST_METHOD"] == "HEAD":
            _close(body)
            return []
        return body

    # -- plumbing -------------------------------------------------------------------------------
    def _common(self, request: _Request) -> dict[str, str]:
        headers = {
            "x-ms-request-id": request.request_id,
            "x-ms-version": request.headers.get("x-ms-version") or DEFAULT_VERSION,
        }
        client_id = request.headers.get("x-ms-client-request-id")
        if client_id:
            headers["x-ms-client-request-id"] = client_id
        return headers

    def _error(self, request: _Request, error: BlobError) -> tuple[int, dict[str, str], Any]:
        message = _MESSAGES.get(error.code, error.code)
        detail = error.detail
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        text = f"{message}\nRequestId:{request.request_id}\nTime:{stamp}"
        xml = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{error.code}</Code>'
        xml += f"<Message>{escape(text)}</Message>"
        if detail:
            tag = "AuthenticationErrorDetail" if error.status in (401, 403) else "Detail"
            xml += f"<{tag}>{escape(detail)}</{tag}>"
        xml += "</Error>"
        body = xml.encode()
        headers = {
            "Content-Type": "application/xml",
            "Content-Length": str(len(body)),
            "x-ms-error-code": error.code,
            **error.headers,
        }
        if error.status == 401:
            headers["WWW-Authenticate"] = "Bearer, SharedKey"
        if request.environ["REQUEST_METHOD"] == "HEAD":
            headers["Content-Length"] = "0"
        return error.status, headers, [body]

    def _handle(
        self, request: _Request, path: str, query: dict[str, str], operation: str
    ) -> tuple[int, dict[str, str], Any]:
        account, container, name = _parse_path(path)
        if account != self.account.name:
            raise BlobError(
                403, "AuthenticationFailed", f"This endpoint serves account '{self.account.name}'."
            )
        if request.headers.get("authorization"):
            raise BlobError(
                403,
                "AuthenticationFailed",
                "This endpoint accepts only SAS authorization, not an Authorization header.",
            )
        if operation == "Unsupported":
            raise BlobError(405, "UnsupportedHttpVerb")
        try:
            permissions = verify_sas(
                self.account,
                container,
                name,
                request.environ.get("QUERY_STRING", ""),
                _NEEDED[operation],
                request.environ.get("REMOTE_ADDR", ""),
                request.environ.get("wsgi.url_scheme") == "https",
            )
        except SasRejected as rejected:
            self.stats.count("blob_auth_failures")
            raise BlobError(rejected.status, rejected.code, rejected.detail) from None
        if not self.store.has_container(container):
            raise BlobError(404, "ContainerNotFound")
        if operation == "PutBlob":
            return self._put_blob(request, container, name, permissions)
        if operation == "PutBlock":
            return self._put_block(request, container, name, query)
        if operation == "PutBlockList":
            return self._put_block_list(request, container, name, permissions)
        if operation in ("GetBlob", "GetBlobProperties"):
            return self._get_blob(request, container, name)
        raise BlobError(405, "UnsupportedHttpVerb")

    # -- writes ---------------------------------------------------------------------------------
    def _write_check(
        self, request: _Request, permissions: str
    ) -> Callable[[dict[str, Any] | None], None]:
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")

        def check(current: dict[str, Any] | None) -> None:
            if if_none_match is not None and current is not None:
                if if_none_match.strip() == "*":
                    raise BlobError(409, "BlobAlreadyExists")
                if current["etag"] in _etags(if_none_match):
                    raise BlobError(412, "ConditionNotMet")
            if if_match is not None:
                if current is None or (
                    if_match.strip() != "*" and current["etag"] not in _etags(if_match)
                ):
                    raise BlobError(412, "ConditionNotMet")
            if current is not None and "w" not in permissions:
                # `c` creates new blobs only; overwriting needs `w`.
                raise BlobError(403, "AuthorizationPermissionMismatch")

        return check

    def _content_settings(self, request: _Request, block_list: bool) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for prop, (put_header, list_header, _) in _CONTENT_HEADERS.items():
            names = [list_header] if block_list else [list_header, put_header]
            for header in names:
                value = header and request.headers.get(header.lower())
                if value:
                    settings[prop] = value
                    break
        settings.setdefault("content_type", "application/octet-stream")
        settings["metadata"] = {
            key[len("x-ms-meta-") :]: value
            for key, value in request.headers.items()
            if key.startswith("x-ms-meta-")
        }
        return settings

    def _written(self, meta: dict[str, Any], md5: str | None) -> dict[str, str]:
        headers = {
            "ETag": meta["etag"],
            "Last-Modified": _http_date(meta["last_modified"]),
            "x-ms-request-server-encrypted": "true",
            "Content-Length": "0",
        }
        if md5:
            headers["Content-MD5"] = md5
        return headers

    def _put_blob(
        self, request: _Request, container: str, name: str, permissions: str
    ) -> tuple[int, dict[str, str], Any]:
        blob_type = request.headers.get("x-ms-blob-type")
        if not blob_type:
            raise BlobError(400, "MissingRequiredHeader", "x-ms-blob-type")
        if blob_type != "BlockBlob":
            raise BlobError(
                400, "InvalidHeaderValue", f"x-ms-blob-type {blob_type!r}: only BlockBlob."
            )
        check = self._write_check(request, permissions)
        check(self.store.properties(container, name))  # fail before storing the body
        data, size, digest = request.receive(self.store)
        sent_md5 = request.headers.get("content-md5")
        if sent_md5 and sent_md5 != _b64_md5(digest):
            data.unlink(missing_ok=True)
            raise BlobError(400, "Md5Mismatch")
        settings = self._content_settings(request, block_list=False)
        settings["content_md5"] = request.headers.get("x-ms-blob-content-md5") or _b64_md5(digest)
        meta = self.store.commit(container, name, data, {**settings, "size": size}, check)
        self.store.discard_blocks(container, name)
        return 201, self._written(meta, _b64_md5(digest)), []

    def _put_block(
        self, request: _Request, container: str, name: str, query: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        block_id = query.get("blockid") or ""
        try:
            decoded = base64.b64decode(block_id, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not block_id or not decoded or len(decoded) > 64:
            raise BlobError(400, "InvalidQueryParameterValue", f"blockid {block_id!r}")
        data, _, digest = request.receive(self.store)
        sent_md5 = request.headers.get("content-md5")
        if sent_md5 and sent_md5 != _b64_md5(digest):
            data.unlink(missing_ok=True)
            raise BlobError(400, "Md5Mismatch")
        self.store.stage_block(container, name, block_id, data)
        headers = {
            "Content-MD5": _b64_md5(digest),
            "x-ms-request-server-encrypted": "true",
            "Content-Length": "0",
        }
        return 201, headers, []

    def _put_block_list(
        self, request: _Request, container: str, name: str, permissions: str
    ) -> tuple[int, dict[str, str], Any]:
        body = request.read_all(_MAX_BLOCK_LIST)
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise BlobError(400, "InvalidXmlDocument") from None
        if root.tag != "BlockList":
            raise BlobError(400, "InvalidXmlDocument")
        block_ids = []
        for element in root:
            if element.tag not in ("Latest", "Uncommitted", "Committed"):
                raise BlobError(400, "InvalidXmlDocument")
            if element.tag == "Committed":
                # Blocks of committed blobs are not kept: only staged blocks can be listed.
                raise BlobError(400, "InvalidBlockList", "Committed blocks are not supported.")
            block_ids.append((element.text or "").strip())
        check = self._write_check(request, permissions)
        check(self.store.properties(container, name))
        data, size = self.store.assemble(container, name, block_ids)
        settings = self._content_settings(request, block_list=True)
        settings["content_md5"] = request.headers.get("x-ms-blob-content-md5")
        meta = self.store.commit(container, name, data, {**settings, "size": size}, check)
        self.store.discard_blocks(container, name)
        return 201, self._written(meta, None), []

    # -- reads ----------------------------------------------------------------------------------
    def _get_blob(
        self, request: _Request, container: str, name: str
    ) -> tuple[int, dict[str, str], Any]:
        opened = self.store.open(container, name)
        if opened is None:
            raise BlobError(404, "BlobNotFound")
        meta, handle = opened
        try:
            return self._blob_response(request, meta, handle)
        except BaseException:
            handle.close()
            raise

    def _blob_response(
        self, request: _Request, meta: dict[str, Any], handle: Any
    ) -> tuple[int, dict[str, str], Any]:
        etag = meta["etag"]
        if_match = request.headers.get("if-match")
        if if_match and if_match.strip() != "*" and etag not in _etags(if_match):
            raise BlobError(412, "ConditionNotMet")
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and (if_none_match.strip() == "*" or etag in _etags(if_none_match)):
            handle.close()
            return 304, {"ETag": etag, "Content-Length": "0"}, []
        size = int(meta["size"])
        headers = {
            "ETag": etag,
            "Last-Modified": _http_date(meta["last_modified"]),
            "x-ms-creation-time": _http_date(meta["created"]),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-lease-state": "available",
            "x-ms-lease-status": "unlocked",
            "x-ms-server-encrypted": "true",
            "Accept-Ranges": "bytes",
        }
        for prop, (_, _, response_header) in _CONTENT_HEADERS.items():
            if meta.get(prop):
                headers[response_header] = meta[prop]
        for key, value in (meta.get("metadata") or {}).items():
            headers[f"x-ms-meta-{key}"] = value
        spec = request.headers.get("x-ms-range") or request.headers.get("range")
        status, start, end = 200, 0, size - 1
        if spec and request.environ["REQUEST_METHOD"] == "GET":
            match = _RANGE.match(spec.strip())
            if match is None:
                raise BlobError(400, "InvalidHeaderValue", f"range {spec!r}")
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
            if start >= size or (match[2] and int(match[2]) < start):
                raise BlobError(416, "InvalidRange", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            if meta.get("content_md5"):
                headers["x-ms-blob-content-md5"] = meta["content_md5"]
            if request.headers.get("x-ms-range-get-content-md5", "").lower() == "true":
                if end - start + 1 > 4 * 1024 * 1024:
                    raise BlobError(400, "OutOfRangeInput", "MD5 of ranges up to 4 MiB only.")
                handle.seek(start)
                headers["Content-MD5"] = _b64_md5(
                    hashlib.md5(handle.read(end - start + 1)).digest()
                )
        elif meta.get("content_md5"):
            headers["Content-MD5"] = meta["content_md5"]
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        return status, headers, _FileSlice(handle, start, length)


def _close(body: Any) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _etags(header: str) -> set[str]:
    return {part.strip() for part in header.split(",") if part.strip()}


class _FileSlice:
    """WSGI body: `length` bytes of an open file from `start`, closed when done."""

    def __init__(self, handle: Any, start: int, length: int) -> None:
        self.handle = handle
        self.start = start
        self.length = length

    def __iter__(self) -> Iterator[bytes]:
        self.handle.seek(self.start)
        left = self.length
        while left > 0:
            chunk = self.handle.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.handle.close()


class _Request:
    """A blob request's headers and body, read at most once."""

    def __init__(self, environ: dict[str, Any], headers: dict[str, str]) -> None:
        self.environ = environ
        self.headers = headers
        self.request_id = str(uuid.uuid4())
        self.consumed = False

    def _length(self) -> int | None:
        if self.environ.get("wsgi.input_terminated"):
            return None
        try:
            return max(0, int(self.environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            raise BlobError(400, "InvalidHeaderValue", "Content-Length") from None

    def receive(self, store: BlobStore) -> tuple[Path, int, bytes]:
        self.consumed = True
        return store.receive(self.environ["wsgi.input"], self._length())

    def read_all(self, limit: int) -> bytes:
        self.consumed = True
        length = self._length()
        if length is not None and length > limit:
            raise BlobError(413, "RequestBodyTooLarge")
        data = self.environ["wsgi.input"].read(length if length is not None else limit + 1)
        if len(data) > limit:
            raise BlobError(413, "RequestBodyTooLarge")
        return data

    def drain(self) -> None:
        """Read and drop an unread body, so an error answer reaches a client still sending."""
        if self.consumed:
            return
        self.consumed = True
        stream = self.environ.get("wsgi.input")
        try:
            length = self._length()
        except BlobError:
            return
        if stream is None or length == 0:
            return
        left = length
        while left is None or left > 0:
            chunk = stream.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
