"""`doctor` names every failure the tests inject, each with one line saying what is wrong and one
naming the fix: faults come from the emulator (outages, 403/429, revocation, ARM), the Databricks
and Synapse runtime doubles, a spool left by a process that died, and a skewed clock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from plain_access import emulator_token

from spark_aml_bridge import doctor_checks, session
from spark_aml_bridge.doctor import doctor


def _doctor(settings: dict | None = None) -> tuple[int, list[str]]:
    session._reset_for_tests()  # a fresh process's view: no cached session or token
    lines: list[str] = []
    code = doctor(settings, out=lines.append)
    return code, "\n".join(lines).splitlines()


def _failure(lines: list[str], name: str) -> tuple[str, str]:
    """The FAIL line of check `name` and its fix line."""
    for i, line in enumerate(lines):
        if line.startswith(f"[FAIL] {name}:"):
            fix = lines[i + 1].strip() if i + 1 < len(lines) else ""
            assert fix.startswith("fix: "), lines
            return line, fix
    raise AssertionError(f"no failing '{name}' check in:\n" + "\n".join(lines))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _relayed_token(info: dict, expires_in: int) -> str:
    return json.dumps({"token": emulator_token(info), "expires_on": time.time() + expires_in})


@pytest.fixture
def workspace_env(use_emulator, monkeypatch):
    yield use_emulator
    use_emulator.reset()
    session._reset_for_tests()


def test_a_healthy_workspace_passes_every_check(workspace_env):
    code, lines = _doctor()
    assert code == 0, lines
    assert any(line.startswith("[ok  ] clock: within") for line in lines)


def test_unreachable_workspace(workspace_env, monkeypatch):
    host = workspace_env.info["tracking_uri"].split("/")[2]
    uri = workspace_env.info["tracking_uri"].replace(host, f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("SPARK_AML_BRIDGE_WORKSPACE", uri)
    code, lines = _doctor()
    line, fix = _failure(lines, "workspace reachable")
    assert code == 1 and "does not answer" in line and "network path" in fix


def test_tls_without_the_ca_bundle(workspace_env, monkeypatch):
    monkeypatch.delenv("SPARK_AML_BRIDGE_CA_BUNDLE")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace and token")
    assert "CERTIFICATE_VERIFY_FAILED" in line and "SPARK_AML_BRIDGE_CA_BUNDLE" in fix


def test_expired_token(workspace_env, monkeypatch):
    monkeypatch.setenv("_SPARK_AML_BRIDGE_EXECUTOR_TOKEN", _relayed_token(workspace_env.info, -60))
    _, lines = _doctor({"credential": "relayed-token"})
    line, fix = _failure(lines, "workspace and token")
    assert "has expired" in line and "connect()" in fix


def test_revoked_token(workspace_env, monkeypatch):
    token = _relayed_token(workspace_env.info, 3600)
    monkeypatch.setenv("_SPARK_AML_BRIDGE_EXECUTOR_TOKEN", token)
    time.sleep(1.1)  # revocation applies to tokens issued before this second
    workspace_env.revoke_tokens()
    _, lines = _doctor({"credential": "relayed-token"})
    line, fix = _failure(lines, "workspace reachable")
    assert "rejected" in line, line
    assert "revoked" in fix, fix


def test_403_role_missing(workspace_env):
    workspace_env.inject_faults(403, count=5, path_contains="experiments/search")
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace reachable")
    assert "refused" in line and "AzureML Data Scientist" in fix


@pytest.mark.parametrize(("status", "words"), [(429, "throttling"), (503, "unavailable")])
def test_429_503_storm_in_progress(workspace_env, status, words):
    if status == 503:
        workspace_env.outage(30)
    else:
        workspace_env.inject_faults(429, count=20, retry_after=2, path_contains="experiments")
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace reachable")
    assert words in line and f"HTTP {status}" in line and "storm is in progress" in fix


def test_arm_404(workspace_env, monkeypatch):
    info = workspace_env.info
    monkeypatch.setenv(
        "SPARK_AML_BRIDGE_WORKSPACE",
        f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
        "/providers/Microsoft.MachineLearningServices/workspaces/no-such-ws",
    )
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace and token")
    assert "found no workspace 'no-such-ws'" in line and "az ml workspace show" in fix


def test_wrong_tenant(workspace_env, monkeypatch):
    monkeypatch.setenv("AZURE_TENANT_ID", str(uuid.uuid4()))
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace and token")
    assert "does not know this tenant" in line and "AZURE_TENANT_ID" in fix


def test_clock_skew(workspace_env, monkeypatch):
    # This machine's clock, 15 minutes fast (the authority's is the emulator's, i.e. true time).
    monkeypatch.setattr(doctor_checks, "local_time", lambda: time.time() + 900)
    _, lines = _doctor()
    line, fix = _failure(lines, "clock")
    assert "ahead of the token authority's" in line and "timedatectl" in fix


def test_databricks_secret_scope_missing(emulator, databricks_runtime):
    databricks_runtime(secrets={})
    _, lines = _doctor(
        {
            "credential": "databricks-secret-scope",
            "tenant_id": emulator.info["tenant_id"],
            "client_id": emulator.info["client_id"],
            "databricks_secret_scope": "aml",
            "databricks_secret_key": "sp-secret",
        }
    )
    line, fix = _failure(lines, "workspace and token")
    assert "scope 'aml' does not exist" in line and "databricks secrets create-scope aml" in fix


def test_synapse_linked_service_missing(emulator, synapse_runtime, monkeypatch):
    info = emulator.info
    synapse_runtime(
        emulator,
        vaults={"kv-local": {"aml-sp-secret": info["client_secret"]}},
        linked_services={"ls_other": "kv-local"},
    )
    for name, value in {
        "SPARK_AML_BRIDGE_TENANT_ID": info["tenant_id"],
        "SPARK_AML_BRIDGE_CLIENT_ID": info["client_id"],
        "SPARK_AML_BRIDGE_CLIENT_SECRET_NAME": "aml-sp-secret",
        "SPARK_AML_BRIDGE_AUTHORITY": info["authority"],
        "SPARK_AML_BRIDGE_KEY_VAULT_LINKED_SERVICE": "ls_kv",
    }.items():
        monkeypatch.setenv(name, value)
    _, lines = _doctor()
    line, fix = _failure(lines, "workspace and token")
    assert "linked service 'ls_kv' does not exist" in line
    assert "create an Azure Key Vault linked service" in fix


_DEAD_PROCESS = textwrap.dedent(
    """
    import os, sys
    from spark_aml_bridge.dual.spool import Spool
    spool = Spool.create(sys.argv[1], "sqlite:///primary.db", sys.argv[2])
    for i in range(4):
        spool.append("log_param", "run-1", {"key": f"p{i}", "value": "1"})
    refused = spool.fetch()[0]
    spool.dead_letter(refused, "INVALID_PARAMETER_VALUE: the mirror refused this parameter")
    os._exit(0)  # dies with writes still spooled
    """
)


def test_dual_spool_backlog_and_dead_letters(workspace_env, tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    subprocess.run(
        [sys.executable, "-c", _DEAD_PROCESS, str(spool_dir), workspace_env.info["tracking_uri"]],
        check=True,
        timeout=60,
        env=dict(os.environ),
    )
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(spool_dir))
    code, lines = _doctor()
    assert code == 1
    line, fix = _failure(lines, "dual spool backlog")
    assert "3 write(s)" in line and "gone" in line
    assert fix == f"fix: spark-aml-bridge mirror replay --spool-dir {spool_dir}"
    line, fix = _failure(lines, "dual dead letters")
    assert "refused 1 write(s)" in line and "INVALID_PARAMETER_VALUE" in line
    assert "mirror status" in fix and "mirror backfill" in fix
