"""A threaded WSGI server with HTTP/1.1 keep-alive and TLS, built on werkzeug's dev server.

Why not werkzeug's `make_server` as is: its handler sends `Connection: close` on every response,
so each MLflow call would pay a new TCP connection plus a TLS handshake, and it performs the TLS
handshake inside the accept loop, where one silent client stalls every other one. This module
keeps werkzeug's socket server and environ building and replaces only the response writer.
"""

from __future__ import annotations

import io
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

_log = logging.getLogger("spark_aml_bridge.emulator.http")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Request bodies left unread by the app are drained up to this size to keep the connection;
# beyond it the connection is closed instead.
_MAX_DRAIN = 16 * 1024 * 1024


class _Body(io.RawIOBase):
    """The request body: exactly Content-Length bytes, so reads never reach the next request."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.remaining)]
        count = self._stream.readinto(view) or 0
        self.remaining -= count
        return count


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY, small responses wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    # Buffer the writer so status line, headers and a small body leave in one TLS record;
    # http.server flushes it after every request.
    wbufsize = -1
    # Idle keep-alive connections give their thread back after this many seconds.
    timeout = 120

    def setup(self) -> None:
        conn = self.request
        if isinstance(conn, ssl.SSLSocket):
            conn.settimeout(self.timeout)
            conn.do_handshake()  # here, in the connection's thread, not in the accept loop
        super().setup()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if getattr(self.server, "log_requests", False):
            _log.info('"%s" %s %s', self.requestline, code, size)

    def log_error(self, format: str, *args: Any) -> None:
        _log.debug(format, *args)  # timeouts of idle keep-alive connections are routine

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug(format, *args)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        environ = self.make_environ()
        body = environ["wsgi.input"]
        if not environ.get("wsgi.input_terminated"):
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                self.close_connection = True
                self.send_error(400, "Bad Content-Length")
                return
            body = _Body(self.rfile, length)
            environ["wsgi.input"] = body

        state: dict[str, Any] = {"status": None, "headers": None, "sent": False, "chunked": False}
        head_only = environ["REQUEST_METHOD"] == "HEAD"

        def send_head() -> None:
            code_text, _, reason = state["status"].partition(" ")
            code = int(code_text)
            self.send_response(code, reason)
            names = set()
            for name, value in state["headers"]:
                self.send_header(name, value)
                names.add(name.lower())
            if (
                "content-length" not in names
                and not head_only
                and code >= 200
                and code not in (204, 304)
            ):
                state["chunked"] = True
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            state["sent"] = True

        def write(data: bytes) -> None:
            if not state["sent"]:
                send_head()
            if not data or head_only:
                return
            if state["chunked"]:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if exc_info and state["sent"]:
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"], state["headers"] = status, headers
            return write

        try:
            result = self.server.app(environ, start_response)
            try:
                for data in result:
                    write(data)
                if not state["sent"]:
                    send_head()
                if state["chunked"]:
                    self.wfile.write(b"0\r\n\r\n")
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
            return
        except Exception:  # noqa: BLE001 - a server answers 500 instead of dying
            _log.exception("error while serving %s %s", self.command, self.path)
            self.close_connection = True
            if not state["sent"]:
                self.send_error(500)
            return
        self._drain(body)

    def _drain(self, body: Any) -> None:
        """Consume what the app left of the request body, so the next request parses cleanly."""
        try:
            if isinstance(body, _Body):
                if body.remaining > _MAX_DRAIN:
                    self.close_connection = True
                while body.remaining > 0 and not self.close_connection:
                    if not body.read(min(body.remaining, 65536)):
                        self.close_connection = True  # client went away mid-body
            else:  # chunked: read up to the terminating chunk
                drained = 0
                while chunk := body.read(65536):
                    drained += len(chunk)
                    if drained > _MAX_DRAIN:
                        self.close_connection = True
                        return
        except (OSError, ValueError):
            self.close_connection = True


class EmulatorHTTPServer(ThreadedWSGIServer):
    """One listening port: threaded, keep-alive, optionally TLS, bound by the caller."""

    def __init__(
        self,
        sock: socket.socket,
        app: WSGIApp,
        tls: ssl.SSLContext | None = None,
        log_requests: bool = False,
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler=_KeepAliveHandler, fd=sock.fileno())
        sock.close()  # werkzeug dup()ed the descriptor
        self._tls = tls
        # werkzeug reads this to set wsgi.url_scheme and to recognise SSL errors.
        self.ssl_context = tls
        self.log_requests = log_requests
        self._thread: threading.Thread | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        if self._tls is not None:
            conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and dropped connections are routine (probes, clients going away).
        _log.debug("connection from %s failed", client_address, exc_info=True)

    def start(self, name: str) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()


def bind_loopback(preferred_port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1: `preferred_port` if free, else any free port."""
    for port in dict.fromkeys((preferred_port, 0)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError("no free port on 127.0.0.1")
