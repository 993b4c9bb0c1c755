"""The driver's service for its Spark executors: fresh workspace tokens and the active run.

Executors never receive a token in their environment (py4j logs the environment of Python
functions at DEBUG). They get a *handle* instead (``DRIVER_HANDLE_ENV``: this service's address
and the name of a key file), and the key file travels with ``SparkContext.addFile`` — Spark copies
its content to each executor, and only its name appears in the Spark UI and event log. The key
file holds a random per-connection secret and this service's self-signed certificate, which
executors pin: tokens cross the cluster network over TLS, to executors that know the secret only.

Executors ask when their own cached token nears expiry (the token cache in each Python worker),
so the driver sees about one request per executor Python process per token lifetime, and the
driver's own token cache keeps Azure AD at about one request per lifetime for all of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.token_cache import TokenCache

_log = logging.getLogger(__name__)

DRIVER_HANDLE_ENV = "_SPARK_AML_BRIDGE_DRIVER"
KEY_HEADER = "X-Spark-Aml-Bridge-Key"
CLIENT_HEADER = "X-Spark-Aml-Bridge-Client"
TOKEN_PATH = "/v1/token"
RUN_PATH = "/v1/run"


def token_fingerprint(token: str) -> str:
    """What an executor sends to say "this token was rejected" (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for this service; executors pin the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spark-aml-bridge driver")])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        # Jobs may run for days; the secret, not the expiry, is what protects the service.
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain reads files only: a private directory, removed right after.
    with tempfile.TemporaryDirectory(prefix="spark-aml-bridge-") as folder:
        cert_path, key_path = os.path.join(folder, "c.pem"), os.path.join(folder, "k.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class ServiceStats:
    """Requests this service answered: totals and per executor process ("host:pid")."""

    token_requests: int = 0
    run_requests: int = 0
    rejected: int = 0
    token_requests_by_client: Counter[str] | None = None

    def snapshot(self) -> dict[str, Any]:
        by_client = dict(self.token_requests_by_client or {})
        return {
            "token_requests": self.token_requests,
            "run_requests": self.run_requests,
            "rejected": self.rejected,
            "token_clients": len(by_client),
            "max_token_requests_per_client": max(by_client.values(), default=0),
            "token_requests_by_client": by_client,
        }


class DriverService:
    """A small HTTPS service on the driver, for its executors only (they hold the secret)."""

    def __init__(
        self, tokens: TokenCache | None, *, bind: str = "127.0.0.1", advertise: str | None = None
    ) -> None:
        self._tokens = tokens
        self._secret = secrets.token_urlsafe(32)
        self.host = advertise or bind
        cert_pem, key_pem = _self_signed(self.host)
        self._cert_pem = cert_pem.decode()
        self._lock = threading.Lock()
        self._stats = ServiceStats(token_requests_by_client=Counter())
        self._server = ThreadingHTTPServer((bind, 0), _handler_for(self))
        self._server.daemon_threads = True
        # The handshake happens in each request's thread, so a slow client cannot stall accept().
        self._server.socket = _server_context(cert_pem, key_pem).wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="spark-aml-bridge-driver-service",
            daemon=True,
        )
        self._thread.start()

    # -- what executors receive ------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def serves_tokens(self) -> bool:
        return self._tokens is not None

    def key_material(self) -> str:
        """The key file's content: the secret and the certificate to pin. Never logged."""
        return json.dumps({"secret": self._secret, "cert": self._cert_pem})

    def handle(self, key_file: str) -> str:
        """The environment value executors get: where to ask and which file holds the key."""
        return json.dumps(
            {"url": self.url, "key_file": key_file, "tokens": self.serves_tokens},
            sort_keys=True,
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.snapshot()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __repr__(self) -> str:
        return f"DriverService({self.url}, tokens={'on' if self.serves_tokens else 'off'})"

    # -- answers ------------------------------------------------------------------------------
    def authorized(self, presented: str | None) -> bool:
        ok = presented is not None and hmac.compare_digest(presented, self._secret)
        if not ok:
            with self._lock:
                self._stats.rejected += 1
        return ok

    def token(self, client: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self._tokens is None:
            return 404, {"error": "this driver does not hand out tokens (executors have their own)"}
        if request.get("scope") not in (None, self._tokens.scope):
            return 400, {"error": f"this driver serves tokens for {self._tokens.scope} only"}
        with self._lock:
            self._stats.token_requests += 1
            assert self._stats.token_requests_by_client is not None
            self._stats.token_requests_by_client[client] += 1
        rejected = request.get("rejected")
        if rejected:
            current = self._tokens.access_token()
            if hmac.compare_digest(token_fingerprint(current.token), str(rejected)):
                # The workspace said 401 to an executor: get a new token, not the same one again.
                self._tokens.invalidate(current.token)
        try:
            access = self._tokens.access_token()
        except Exception as exc:  # noqa: BLE001 - the executor gets the driver's explanation
            return 503, {"error": str(exc)}
        return 200, {"token": access.token, "expires_on": int(access.expires_on)}

    def active_run(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._stats.run_requests += 1
        from spark_aml_bridge.mlflow_private import latest_active_run

        run = latest_active_run()
        if run is None:
            return 200, {"run_id": None}
        return 200, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


def _handler_for(service: DriverService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # seconds a connection may sit idle
        server_version = "spark-aml-bridge"
        sys_version = ""

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if not length:
                return {}
            try:
                value = json.loads(self.rfile.read(min(length, 65536)))
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}

        def _dispatch(self) -> None:
            request = self._body()
            if not service.authorized(self.headers.get(KEY_HEADER)):
                self._answer(401, {"error": "unknown key"})
                return
            client = (self.headers.get(CLIENT_HEADER) or "?")[:128]
            if self.path == TOKEN_PATH:
                self._answer(*service.token(client, request))
            elif self.path == RUN_PATH:
                self._answer(*service.active_run())
            else:
                self._answer(404, {"error": "not found"})

        do_GET = do_POST = _dispatch

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Request lines only (never headers or bodies), at DEBUG.
            _log.debug("executor request: " + format, *args)

    return Handler
