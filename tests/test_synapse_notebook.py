"""The Synapse service-principal notebook, executed by a real Jupyter kernel under the Synapse
runtime double, against the emulator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

import spark_aml_bridge
from spark_aml_bridge.config import SETTINGS
from spark_aml_bridge.emulator.synapse.runtime import SynapseRuntime
from spark_aml_bridge.platforms.synapse.pool_config import (
    config_from_settings,
    synapse_pool_configuration,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "synapse_service_principal.ipynb"
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(json.dumps(output.get("data", {})))
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def test_synapse_service_principal_notebook(emulator, tmp_path):
    info = emulator.info
    secret = info["client_secret"]
    runtime = SynapseRuntime(
        info,
        tmp_path / "runtime",
        session="notebook",
        vaults={"kv-team": {"aml-sp-secret": secret}},
        linked_services={"ls_kv_team": "kv-team"},
    )
    # What the admin's pool configuration gives the session (the emulator needs its authority
    # and CA on top); a kernel without Spark reads the same settings from their env names.
    settings = {
        "workspace": info["tracking_uri"],
        "credential": "key-vault-sp",
        "tenant_id": info["tenant_id"],
        "client_id": info["client_id"],
        "key_vault_linked_service": "ls_kv_team",
        "client_secret_name": "aml-sp-secret",
        "authority": info["authority"],
        "ca_bundle": info["ca_bundle"],
    }
    pool_conf = synapse_pool_configuration(config_from_settings(settings)).spark_conf
    by_key = {s.conf_key: s.env for s in SETTINGS}
    env = runtime.driver_env()
    env.update({by_key[k]: v for k, v in pool_conf.items() if k in by_key})

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)
    text = _text(nb)
    assert secret not in text and not JWT.search(text)
    assert "platform=synapse" in text and "session=notebook" in text
    assert "linked service ls_kv_team" in text and "app " + info["client_id"][:8] in text
    run_id = re.search(r"run_id ([\w-]+)", text).group(1)

    spark_aml_bridge.connect(
        info["tracking_uri"],
        credential="service-principal",
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        client_secret=secret,
        authority=info["authority"],
        ca_bundle=info["ca_bundle"],
    )
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == {"model": "Ridge"}
    assert run.data.metrics["test_rows"] == 111
    tags = run.data.tags
    assert tags["spark_aml_bridge.platform"] == "synapse"
    assert tags["spark_aml_bridge.session"] == "notebook"
    assert tags["spark_aml_bridge.synapse_workspace"] == "syn-local"
    assert tags["mlflow.user"] == "alice@contoso.example"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(c.data.params["alpha"] for c in children) == ["0.1", "1.0"]
    assert all(0 < c.data.metrics["r2"] < 1 for c in children)
