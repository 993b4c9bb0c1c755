"""An HTTPS double of a Synapse workspace's Livy batch API, for the real azure-synapse-spark SDK.

    livy = LivyDouble(emulator.info, tmp_path / "livy", pools=("pool1",)).start()
    client = SparkClient(credential, livy.endpoint, "pool1", connection_verify=livy.ca_bundle)
    ...
    livy.requests  # every request as received (method, path, query, JSON body; no auth header)

Emulated: ``/livyApi/versions/{version}/sparkPools/{pool}/batches`` — create (POST, body
``SparkBatchJobOptions``: ``name`` and ``file`` required), list (GET), get (GET ``/{id}``) and
cancel (DELETE ``/{id}``), with Livy's states; bearer tokens for ``https://dev.azuresynapse.net``
checked like the service would (signature against the emulator authority's published keys,
audience, issuer, expiry); unknown pools answer 404. Optionally each batch is *run* by a runner
(``local_runner``): a local Python driver with the runtime double's environment, the batch conf
as its Spark conf and ``spark.yarn.appMasterEnv.*`` as its environment.

Not emulated: Livy sessions (interactive), the ``detailed`` scheduler/plugin fields beyond a
minimal shape, the exact error bodies of the service (``{"code", "message"}`` here — VERIFY), file
staging from ADLS (``file`` must be a local path or ``file://`` URI to be run), RBAC (any valid
token of the tenant may submit).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIENCES = ("https://dev.azuresynapse.net", "https://dev.azuresynapse.net/")
_ROUTE = re.compile(
    r"^/livyApi/versions/(?P<version>[^/]+)/sparkPools/(?P<pool>[^/]+)/batches(?:/(?P<id>[^/]+))?/?$"
)
LIVY_VERSIONS = ("2019-11-01-preview",)
TERMINAL = ("success", "dead", "killed", "error")

Runner = Callable[[dict[str, Any], "Batch"], None]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Batch:
    id: int
    pool: str
    request: dict[str, Any]
    submitter_name: str
    submitter_id: str
    state: str = "not_started"
    app_id: str | None = None
    log: list[str] = field(default_factory=list)
    times: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_state(self, state: str) -> None:
        with self.lock:
            self.state = state
            self.times[f"{_camel(state)}At"] = _now()

    def to_json(self, workspace: str) -> dict[str, Any]:
        result = {"success": "Succeeded", "dead": "Failed", "killed": "Cancelled"}.get(
            self.state, "Uncertain"
        )
        with self.lock:
            return {
                "livyInfo": {**self.times, "currentState": self.state},
                "name": self.request.get("name"),
                "workspaceName": workspace,
                "sparkPoolName": self.pool,
                "submitterName": self.submitter_name,
                "submitterId": self.submitter_id,
                "artifactId": self.request.get("artifactId"),
                "jobType": "SparkBatch",
                "result": result,
                "errorInfo": [],
                "tags": self.request.get("tags") or {},
                "id": self.id,
                "appId": self.app_id,
                "appInfo": {},
                "state": self.state,
                "log": list(self.log[-100:]),
            }


def _camel(state: str) -> str:
    head, *rest = state.split("_")
    return head + "".join(p.capitalize() for p in rest)


class LivyApp:
    """WSGI app for the double's port."""

    def __init__(
        self,
        workspace: str,
        pools: tuple[str, ...],
        check_token: Callable[[str | None], tuple[dict[str, Any] | None, str]],
        runner: Runner | None,
    ) -> None:
        self.workspace = workspace
        self.pools = pools
        self.check_token = check_token
        self.runner = runner
        self.batches: dict[int, Batch] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._next = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Any) -> Any:
        body_text = request.get_data(as_text=True)
        try:
            body = json.loads(body_text) if body_text else None
        except ValueError:
            body = body_text
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.args),
                    "headers": {
                        k: v for k, v in request.headers.items() if k.lower() != "authorization"
                    },
                    "body": body,
                }
            )
        match = _ROUTE.match(request.path)
        if not match:
            return _error(404, "NotFound", f"No route matches '{request.path}'.")
        claims, problem = self.check_token(request.headers.get("Authorization"))
        if claims is None:
            return _error(401, "AuthenticationFailed", problem)
        if match["version"] not in LIVY_VERSIONS:
            return _error(
                400, "InvalidApiVersion", f"Livy API version '{match['version']}' is not supported."
            )
        pool = match["pool"]
        if pool not in self.pools:
            return _error(
                404,
                "SparkPoolNotFound",
                f"Spark pool '{pool}' was not found in workspace '{self.workspace}'.",
            )
        batch_id = match["id"]
        if batch_id is None:
            if request.method == "POST":
                return self.create(pool, body, claims)
            if request.method == "GET":
                return self.list(pool)
            return _error(405, "MethodNotAllowed", f"{request.method} is not allowed here.")
        try:
            batch = self.batches[int(batch_id)]
        except (ValueError, KeyError):
            return _error(404, "BatchNotFound", f"Batch '{batch_id}' was not found.")
        if request.method == "GET":
            return _json(batch.to_json(self.workspace))
        if request.method == "DELETE":
            self.cancel(batch)
            return _json({"msg": "deleted"})
        return _error(405, "MethodNotAllowed", f"{request.method} is not allowed here.")

    def create(self, pool: str, body: Any, claims: dict[str, Any]) -> Any:
        if not isinstance(body, dict):
            return _error(400, "InvalidRequest", "The request body must be a JSON object.")
        missing = [k for k in ("name", "file") if not body.get(k)]
        if missing:
            return _error(
                400, "InvalidRequest", f"Missing required field(s): {', '.join(missing)}."
            )
        conf = body.get("conf") or {}
        if not isinstance(conf, dict) or not all(isinstance(v, str) for v in conf.values()):
            return _error(400, "InvalidRequest", "'conf' must map strings to strings.")
        with self._lock:
            batch_id = self._next
            self._next += 1
        who = claims.get("upn") or claims.get("unique_name") or claims.get("appid") or ""
        batch = Batch(batch_id, pool, body, str(who), str(claims.get("oid", "")))
        batch.set_state("not_started")
        self.batches[batch_id] = batch
        if self.runner is not None:
            threading.Thread(
                target=self._run, args=(body, batch), name=f"livy-batch-{batch_id}", daemon=True
            ).start()
        return _json(batch.to_json(self.workspace))

    def _run(self, body: dict[str, Any], batch: Batch) -> None:
        assert self.runner is not None
        batch.set_state("starting")
        try:
            self.runner(body, batch)
        except Exception as exc:  # noqa: BLE001 - a failing run is a dead batch, not a crash
            batch.log.append(f"runner failed: {type(exc).__name__}: {exc}")
            batch.set_state("dead")

    def list(self, pool: str) -> Any:
        sessions = [b.to_json(self.workspace) for b in self.batches.values() if b.pool == pool]
        return _json({"from": 0, "total": len(sessions), "sessions": sessions})

    def cancel(self, batch: Batch) -> None:
        if batch.process is not None and batch.process.poll() is None:
            batch.process.terminate()
        if batch.state not in TERMINAL:
            batch.set_state("killed")


def _json(payload: Any, status: int = 200) -> Any:
    from werkzeug.wrappers import Response

    return Response(json.dumps(payload), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> Any:
    return _json({"code": code, "message": message}, status)


class TokenChecker:
    """Checks bearer tokens for the Synapse development endpoint against the emulator's keys."""

    def __init__(self, emulator_info: Mapping[str, Any]) -> None:
        self.info = emulator_info
        self._keys: dict[str, Any] | None = None

    def _public_keys(self) -> dict[str, Any]:
        if self._keys is None:
            import requests
            from jwt.algorithms import RSAAlgorithm

            url = f"{self.info['authority']}/{self.info['tenant_id']}/discovery/v2.0/keys"
            response = requests.get(url, verify=self.info["ca_bundle"], timeout=30)
            response.raise_for_status()
            self._keys = {
                jwk["kid"]: RSAAlgorithm.from_jwk(json.dumps(jwk))
                for jwk in response.json()["keys"]
            }
        return self._keys

    def __call__(self, header: str | None) -> tuple[dict[str, Any] | None, str]:
        import jwt

        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None, "Bearer token not provided."
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._public_keys().get(kid)
            if key is None:
                return None, "The token is not signed by a key of the tenant."
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(AUDIENCES),
                issuer=f"https://sts.windows.net/{self.info['tenant_id']}/",
            )
        except jwt.ExpiredSignatureError:
            return None, "Token Authentication failed: the token has expired."
        except jwt.InvalidAudienceError:
            aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
            return None, f"Token Authentication failed: audience '{aud}' is not {AUDIENCES[0]}."
        except jwt.PyJWTError as exc:
            return None, f"Token Authentication failed: {exc}."
        return claims, ""


class LivyDouble:
    """The Livy batch API of one Synapse workspace on ``https://127.0.0.1:<port>``."""

    def __init__(
        self,
        emulator_info: Mapping[str, Any],
        state_dir: str | Path,
        *,
        workspace: str = "syn-local",
        pools: tuple[str, ...] = ("pool1",),
        runner: Runner | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.app = LivyApp(workspace, tuple(pools), TokenChecker(emulator_info), runner)
        self._server: Any = None
        self.endpoint = ""
        self.ca_bundle = ""

    def start(self) -> LivyDouble:
        from spark_aml_bridge.emulator.httpd import EmulatorHTTPServer, bind_loopback
        from spark_aml_bridge.emulator.tls import prepare_tls

        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca_bundle, tls = prepare_tls(self.state_dir)
        sock = bind_loopback(0)
        port = sock.getsockname()[1]
        self._server = EmulatorHTTPServer(sock, self.app, tls=tls)
        self._server.start("synapse-livy-double")
        self.endpoint = f"https://127.0.0.1:{port}"
        self.ca_bundle = str(ca_bundle)
        return self

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.app.requests)

    @property
    def batches(self) -> dict[int, Batch]:
        return dict(self.app.batches)

    def stop(self) -> None:
        for batch in self.app.batches.values():
            if batch.process is not None and batch.process.poll() is None:
                batch.process.kill()
                batch.process.wait()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LivyDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_runner(runtime: Any, timeout: float = 600.0) -> Runner:
    """Run each batch as a Synapse-like driver: ``python <file> <args>`` in a process with the
    runtime double's environment (session ``batch``), the batch conf as Spark conf (through
    ``PYSPARK_SUBMIT_ARGS``) and ``spark.yarn.appMasterEnv.*`` as environment."""

    def run(body: dict[str, Any], batch: Batch) -> None:
        file = str(body["file"])
        if file.startswith("file://"):
            file = file[len("file://") :]
        if not Path(file).is_file():
            batch.log.append(f"file {body['file']} cannot be fetched by this double")
            batch.set_state("dead")
            return
        env = runtime.driver_env(body.get("conf") or {})
        command = [sys.executable, file, *[str(a) for a in body.get("args") or []]]
        batch.set_state("running")
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(Path(file).parent),
        )
        batch.process = process
        started = time.monotonic()
        assert process.stdout is not None
        for line in process.stdout:
            batch.log.append(line.rstrip("\n"))
            if time.monotonic() - started > timeout:
                process.kill()
                break
        code = process.wait()
        if batch.state != "killed":
            batch.set_state("success" if code == 0 else "dead")

    return run
