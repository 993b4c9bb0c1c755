"""Bad input gets one clear error that names the fix, and never a secret or a token."""

from __future__ import annotations

import logging
import re
import socket
import uuid

import pytest

import spark_aml_bridge
from spark_aml_bridge.errors import (
    ConfigError,
    CredentialError,
    WorkspaceAddressError,
    WorkspaceUnreachableError,
)

JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")


def _assert_clean(text: str, secret: str) -> None:
    assert secret not in text
    assert not JWT.search(text), "a token leaked into a message or log"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    return caplog


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_malformed_arm_id_quotes_the_bad_part(use_emulator):
    with pytest.raises(WorkspaceAddressError) as info:
        spark_aml_bridge.connect(
            "/subscriptions/not-a-guid/resourceGroups/rg/providers/"
            "Microsoft.MachineLearningServices/workspaces/ws"
        )
    assert "not-a-guid" in str(info.value) and "/subscriptions/" in str(info.value).split("Fix")[-1]


def test_malformed_tracking_uri(use_emulator):
    with pytest.raises(WorkspaceAddressError) as info:
        spark_aml_bridge.connect("azureml://westeurope.api.azureml.ms/mlflow/v1.0/oops")
    assert "azureml://" in str(info.value)


def test_no_workspace_names_the_settings(monkeypatch):
    with pytest.raises(ConfigError) as info:
        spark_aml_bridge.connect()
    assert "SPARK_AML_BRIDGE_WORKSPACE" in str(info.value)


def test_unknown_credential_spec_lists_known_ones(use_emulator):
    with pytest.raises(ConfigError) as info:
        spark_aml_bridge.connect(credential="kerberos")
    message = str(info.value)
    assert "kerberos" in message and "managed-identity" in message and "azure-cli" in message


def test_no_credential_available_lists_every_source_tried(emulator, monkeypatch, logs):
    monkeypatch.setenv("SPARK_AML_BRIDGE_WORKSPACE", emulator.info["tracking_uri"])
    monkeypatch.setenv("SPARK_AML_BRIDGE_CA_BUNDLE", emulator.info["ca_bundle"])
    monkeypatch.setenv("PATH", "/nonexistent")  # no `az`
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    message = str(info.value)
    for source in ("env", "managed-identity-env", "relayed-token", "azure-cli"):
        assert f"- {source}:" in message
    assert "AZURE_CLIENT_SECRET" in message


def test_wrong_tenant_is_named(use_emulator, monkeypatch, logs):
    monkeypatch.setenv("AZURE_TENANT_ID", str(uuid.uuid4()))
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    message = str(info.value)
    assert "tenant" in message and "AZURE_TENANT_ID" in message
    _assert_clean(message, use_emulator.info["client_secret"])
    _assert_clean(logs.text, use_emulator.info["client_secret"])


def test_wrong_secret_is_named_without_echoing_it(use_emulator, monkeypatch, logs):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "definitely-wrong-secret")
    with pytest.raises(CredentialError) as info:
        spark_aml_bridge.connect()
    assert "client secret is wrong" in str(info.value)
    _assert_clean(str(info.value), "definitely-wrong-secret")
    _assert_clean(logs.text, "definitely-wrong-secret")


def test_workspace_down_is_one_clear_error(use_emulator, monkeypatch, logs):
    info = use_emulator.info
    host = info["tracking_uri"].split("/")[2]
    down = info["tracking_uri"].replace(host, f"127.0.0.1:{_closed_port()}")
    with pytest.raises(WorkspaceUnreachableError) as raised:
        spark_aml_bridge.connect(down)
    assert "does not answer" in str(raised.value) and "Fix:" in str(raised.value)
    _assert_clean(str(raised.value), info["client_secret"])
    _assert_clean(logs.text, info["client_secret"])


def test_authority_down_is_one_clear_error(use_emulator, monkeypatch):
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", f"https://127.0.0.1:{_closed_port()}")
    with pytest.raises(CredentialError) as raised:
        spark_aml_bridge.connect()
    assert "could not reach its token endpoint" in str(raised.value)


def test_unknown_workspace_in_arm(use_emulator):
    info = use_emulator.info
    arm_id = info["workspace_arm_id"].rsplit("/", 1)[0] + "/no-such-ws"
    with pytest.raises(WorkspaceAddressError) as raised:
        spark_aml_bridge.connect(arm_id)
    assert "no-such-ws" in str(raised.value)


def test_arm_id_resolves_through_arm(use_emulator):
    bridge = spark_aml_bridge.connect(use_emulator.info["workspace_arm_id"])
    assert bridge.workspace.host == use_emulator.info["tracking_uri"].split("/")[2]
