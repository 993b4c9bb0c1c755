"""Bearer tokens go only to trusted hosts: connected or configured workspaces, cloud AML hosts.

A TLS listener of our own on another loopback port stands for a foreign host named in an
azureml:// URI (artifact location, model version source, tracking and registry URIs): it records
every request, and no token (no request at all) may reach it.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spark_aml_bridge.azureml.trust import UntrustedHostError, is_cloud_api_host


class Listener:
    """HTTPS on 127.0.0.1 with the emulator's server certificate; records every request."""

    def __init__(self, state_dir: str, redirect_to: str | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                listener.requests.append({"path": self.path, **dict(self.headers.items())})
                if redirect_to:
                    self.send_response(307)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"experiments": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        tls = Path(state_dir) / "tls"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "server.pem", tls / "server-key.pem")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.netloc = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tokens_received(self) -> list[str]:
        return [r["Authorization"] for r in self.requests if "Authorization" in r]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener(emulator):
    handle = Listener(emulator.info["state_dir"])
    yield handle
    handle.close()


def _elsewhere(uri: str, netloc: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{netloc}/{rest.split('/', 1)[1]}"


def _refused(excinfo: pytest.ExceptionInfo, netloc: str) -> None:
    chain, error = [], excinfo.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    refusal = next((e for e in chain if isinstance(e, UntrustedHostError)), None)
    text = "\n".join(str(e) for e in chain)
    assert refusal is not None, text
    assert netloc in str(refusal) and "trusted_hosts" in str(refusal)


def test_no_token_for_a_foreign_host_in_any_azureml_uri(use_emulator, listener, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    import spark_aml_bridge

    spark_aml_bridge.connect()
    tracking_uri = use_emulator.info["tracking_uri"]
    foreign = _elsewhere(tracking_uri, listener.netloc)
    client = MlflowClient()
    run = client.create_run(client.create_experiment("trust-artifacts"))
    foreign_artifacts = _elsewhere(run.info.artifact_uri, listener.netloc)
    local_file = tmp_path / "a.txt"
    local_file.write_text("x")

    # An experiment's artifact location / a run's artifact URI naming another host.
    with pytest.raises(Exception) as excinfo:
        mlflow.artifacts.download_artifacts(
            artifact_uri=foreign_artifacts + "/a.txt", dst_path=str(tmp_path)
        )
    _refused(excinfo, listener.netloc)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with pytest.raises(Exception) as excinfo:
        get_artifact_repository(foreign_artifacts).log_artifact(str(local_file))
    _refused(excinfo, listener.netloc)

    # A model version whose source names another host.
    client.create_registered_model("trust-model")
    version = client.create_model_version("trust-model", foreign_artifacts, run.info.run_id)
    with pytest.raises(Exception) as excinfo:
        mlflow.artifacts.download_artifacts(
            f"models:/trust-model/{version.version}", dst_path=str(tmp_path / "m")
        )
    _refused(excinfo, listener.netloc)

    # Tracking and registry URIs set in code.
    with pytest.raises(Exception) as excinfo:
        MlflowClient(tracking_uri=foreign).search_experiments()
    _refused(excinfo, listener.netloc)
    with pytest.raises(Exception) as excinfo:
        MlflowClient(tracking_uri=tracking_uri, registry_uri=foreign).search_registered_models()
    _refused(excinfo, listener.netloc)

    assert listener.requests == []  # no request at all, so certainly no token
    # The workspace itself keeps working.
    client.log_param(run.info.run_id, "still", "works")


def test_trusted_hosts_setting_and_redirects_drop_the_token(use_emulator, monkeypatch):
    """A host trusted on purpose gets the token; a redirect to another host never does."""
    from mlflow import MlflowClient

    target = Listener(use_emulator.info["state_dir"])
    front = Listener(use_emulator.info["state_dir"], redirect_to=f"https://{target.netloc}")
    try:
        monkeypatch.setenv("SPARK_AML_BRIDGE_TRUSTED_HOSTS", front.netloc)
        uri = _elsewhere(use_emulator.info["tracking_uri"], front.netloc)
        assert MlflowClient(tracking_uri=uri).search_experiments() == []
        assert front.tokens_received() and all(
            t.startswith("Bearer ") for t in front.tokens_received()
        )
        assert target.requests  # the redirect was followed...
        assert target.tokens_received() == []  # ...without the Authorization header
    finally:
        front.close()
        target.close()


def test_cloud_api_hosts_are_trusted_only_in_their_cloud():
    assert is_cloud_api_host("westeurope.api.azureml.ms", "AzureCloud")
    assert is_cloud_api_host("abc.workspace.westeurope.api.azureml.ms:443", None)
    assert not is_cloud_api_host("westeurope.api.azureml.ms:8443", "AzureCloud")
    assert not is_cloud_api_host("api.azureml.ms.evil.example", "AzureCloud")
    assert not is_cloud_api_host("chinaeast2.api.ml.azure.cn", "AzureCloud")
    assert is_cloud_api_host("chinaeast2.api.ml.azure.cn", "AzureChinaCloud")
