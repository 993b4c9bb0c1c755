"""A workspace that is unreachable or goes away mid-run: one sentence naming host, cause, fix.

A TCP proxy of the test's own stands between the bridge and the emulator, so the workspace can
disappear in the middle of a run (connection refused) while the emulator keeps serving others.
"""

from __future__ import annotations

import socket
import threading

import pytest
from mlflow.exceptions import MlflowException

import spark_aml_bridge


class Proxy:
    """Forwards 127.0.0.1:<port> to `target`; close() stops listening and cuts every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.netloc = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        # shutdown() wakes the blocked accept() (close() alone would not, on Linux).
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def _one_clear_sentence(error: BaseException, host: str, cause: str) -> None:
    text = str(error)
    assert host in text and cause in text and "Fix:" in text, text
    assert len(text.splitlines()) == 2, text  # the sentence and its fix line, no traceback text
    assert error.__cause__ is not None  # the original stays chained


def test_workspace_going_away_mid_run_is_one_clear_error(use_emulator):
    import mlflow

    endpoint = use_emulator.info["workspace_endpoint"].split("://", 1)[1]
    host, port = endpoint.rsplit(":", 1)
    proxy = Proxy((host, int(port)))
    uri = use_emulator.info["tracking_uri"].replace(endpoint, proxy.netloc)
    spark_aml_bridge.connect(workspace=uri)
    run = mlflow.start_run()
    try:
        mlflow.log_metric("before", 1.0)
        proxy.close()
        with pytest.raises(MlflowException) as info:
            mlflow.log_metric("after", 2.0)
        _one_clear_sentence(info.value, proxy.netloc, "the connection was refused")
        with pytest.raises(MlflowException) as info:
            mlflow.MlflowClient().get_run(run.info.run_id)
        _one_clear_sentence(info.value, proxy.netloc, "refused")
    finally:
        try:
            mlflow.end_run()
        except MlflowException:
            pass


def test_an_http_failure_names_the_status_and_aml_s_message(use_emulator):
    from mlflow import MlflowClient

    spark_aml_bridge.connect()
    client = MlflowClient()
    run = client.create_run(client.create_experiment("failures-status"))
    use_emulator.inject_faults(status=404, count=1, path_contains="runs/get")
    with pytest.raises(MlflowException) as info:
        client.get_run(run.info.run_id)
    host = use_emulator.info["workspace_endpoint"].split("://", 1)[1]
    _one_clear_sentence(info.value, host, "HTTP 404")
    assert "Injected fault: HTTP 404" in str(info.value)  # AML's own message, whole
    assert "deleted or moved" in str(info.value)
    # MLflow's own answers about the request stay MLflow's.
    with pytest.raises(MlflowException) as info:
        client.get_run("0" * 32)
    assert "Fix:" not in str(info.value)


@pytest.mark.parametrize("problem", ["missing", "directory", "not-pem"])
def test_a_bad_ca_bundle_is_named_before_any_token_is_requested(
    use_emulator, monkeypatch, tmp_path, problem
):
    from spark_aml_bridge.errors import ConfigError

    path = tmp_path / "ca.pem"
    if problem == "directory":
        path.mkdir()
    elif problem == "not-pem":
        path.write_text("not a certificate\n")
    monkeypatch.setenv("SPARK_AML_BRIDGE_CA_BUNDLE", str(path))
    before = use_emulator.stats()["token_requests"]["total"]
    with pytest.raises(ConfigError) as info:
        spark_aml_bridge.connect()
    text = str(info.value)
    assert "CA bundle" in text and "SPARK_AML_BRIDGE_CA_BUNDLE" in text and str(path) in text
    assert use_emulator.stats()["token_requests"]["total"] == before


def _wrapped(cause: BaseException) -> MlflowException:
    """What MLflow's http_request raises: its own exception, the transport error as context."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise MlflowException(f"API request to https://h/x failed with exception {exc}")  # noqa: B904
    except MlflowException as error:
        return error


@pytest.mark.parametrize(
    "make, cause, fix",
    [
        (lambda: __import__("socket").gaierror(-2, "Name or service not known"), "DNS", "DNS"),
        (
            lambda: __import__("requests").exceptions.SSLError(
                "certificate verify failed: self-signed certificate in chain " + "x" * 1500
            ),
            "TLS failed",
            "ca_bundle",
        ),
        (lambda: __import__("requests").exceptions.ReadTimeout("read timed out"), "timeout", ""),
        (
            lambda: __import__("requests").exceptions.RetryError("too many 503 error responses"),
            "HTTP 503",
            "retry later",
        ),
    ],
)
def test_each_transport_cause_is_named_whole(make, cause, fix):
    from spark_aml_bridge.azureml.failures import translate

    original = make()
    clear = translate(_wrapped(original), "westeurope.api.azureml.ms")
    assert clear is not None
    text = str(clear)
    assert "westeurope.api.azureml.ms" in text and cause in text and fix in text
    if "x" * 1500 in str(original):
        assert "x" * 1500 in text  # the cause is never cut short
