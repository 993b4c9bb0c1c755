"""Telling Synapse, Fabric, Azure ML serverless Spark and plain Spark apart; context and tags."""

from __future__ import annotations

import json

import pytest

from spark_aml_bridge.platforms import detect_platform
from spark_aml_bridge.platforms.synapse.fabric import FabricPlatform
from spark_aml_bridge.platforms.synapse.shim import SynapsePlatform
from spark_aml_bridge.platforms.synapse.signals import (
    PLATFORM_CONTEXT_ENV,
    PLATFORM_HINT_ENV,
    TRIDENT_CONTEXT_ENV,
    gather_signals,
)

ARCADIA = {"AZURE_SERVICE": "Microsoft.ProjectArcadia"}


@pytest.fixture
def no_trident(tmp_path):
    """Point the trident context file somewhere that does not exist."""
    return {TRIDENT_CONTEXT_ENV: str(tmp_path / "absent")}


def _which(environ, conf=None, role="driver") -> str | None:
    return gather_signals(environ, conf, role).classify()


def test_detection_matrix(no_trident, tmp_path):
    synapse_conf = {"spark.cluster.type": "synapse", "spark.synapse.pool.name": "pool1"}
    trident = tmp_path / "trident-context"
    trident.write_text("trident.workspace.id=abc\n")
    cases = {
        # Synapse notebook or job driver: Arcadia + spark.cluster.type of the active session.
        "synapse driver": ({**ARCADIA, **no_trident}, synapse_conf, "driver", "synapse"),
        # Synapse batch job before (or without) a session: the Arcadia variable alone.
        "synapse, no session": ({**ARCADIA, **no_trident}, None, "process", "synapse"),
        # Fabric: the trident file, sds:// URI, MSNOTEBOOKUTILS_* env or trident conf.
        "fabric file": (
            {**ARCADIA, TRIDENT_CONTEXT_ENV: str(trident)},
            synapse_conf,
            "driver",
            "fabric",
        ),
        "fabric sds uri": (
            {**ARCADIA, **no_trident, "MLFLOW_TRACKING_URI": "sds://fabric/x"},
            None,
            "process",
            "fabric",
        ),
        "fabric python notebook": (
            {**no_trident, "MSNOTEBOOKUTILS_RUNTIME_TYPE": "jupyter"},
            None,
            "process",
            "fabric",
        ),
        "fabric conf": (
            {**ARCADIA, **no_trident},
            {"spark.cluster.type": "trident", "spark.hadoop.trident.workspace.id": "w"},
            "driver",
            "fabric",
        ),
        # SynapseML's rule: Arcadia with another cluster type is Fabric ("synapse_internal").
        "arcadia, other cluster type": (
            {**ARCADIA, **no_trident},
            {"spark.cluster.type": "synapse_internal"},
            "driver",
            "fabric",
        ),
        # Azure ML serverless Spark runs Synapse's runtime: its job variables rule it out.
        "aml serverless spark": (
            {**ARCADIA, **no_trident, "AZUREML_RUN_ID": "run-1"},
            synapse_conf,
            "driver",
            "aml-spark",
        ),
        # Executors: the driver's hint wins; without one, the Arcadia variable.
        "synapse executor (hint)": (
            {**no_trident, PLATFORM_HINT_ENV: "synapse"},
            None,
            "executor",
            "synapse",
        ),
        "synapse executor (env)": ({**ARCADIA, **no_trident}, None, "executor", "synapse"),
        "plain spark": (no_trident, {"spark.app.name": "x"}, "driver", None),
        "plain python": (
            {**no_trident, "AZUREML_CURRENT_CLOUD": "AzureCloud"},
            None,
            "process",
            None,
        ),
    }
    for name, (environ, conf, role, expected) in cases.items():
        assert _which(environ, conf, role) == expected, name


def test_shims_agree_with_the_classification(no_trident):
    environ = {**ARCADIA, **no_trident}
    conf = {"spark.cluster.type": "synapse"}
    assert SynapsePlatform(environ, conf, "driver").detect()
    assert not FabricPlatform(environ, conf, "driver").detect()
    fabric_env = {**environ, "MSNOTEBOOKUTILS_RUNTIME_TYPE": "spark"}
    assert FabricPlatform(fabric_env, conf, "driver").detect()
    assert not SynapsePlatform(fabric_env, conf, "driver").detect()
    aml = {**environ, "AZUREML_ARM_WORKSPACE_NAME": "ws"}
    assert not SynapsePlatform(aml, conf, "driver").detect()
    assert not FabricPlatform(aml, conf, "driver").detect()


def test_real_local_spark_is_not_synapse(spark, monkeypatch, tmp_path):
    monkeypatch.setenv(TRIDENT_CONTEXT_ENV, str(tmp_path / "absent"))
    assert detect_platform().name == "generic"
    # The Arcadia variable alone, with a live session whose cluster type is not Synapse's,
    # is not Synapse either (it would be Fabric by SynapseML's rule).
    monkeypatch.setenv("AZURE_SERVICE", "Microsoft.ProjectArcadia")
    spark.conf.set("spark.cluster.type", "standalone")
    try:
        assert detect_platform().name == "fabric"
        spark.conf.set("spark.cluster.type", "synapse")
        assert detect_platform().name == "synapse"
    finally:
        spark.conf.unset("spark.cluster.type")


def test_synapse_context_and_tags_from_conf(no_trident):
    conf = {
        "spark.cluster.type": "synapse",
        "spark.synapse.workspace.name": "syn-ws",
        "spark.synapse.pool.name": "pool7",
        "spark.app.id": "application_1_0001",
    }
    shim = SynapsePlatform({**ARCADIA, **no_trident}, conf, "driver")
    ctx = shim.context()
    assert ctx.platform == "synapse" and ctx.role == "driver"
    assert ctx.details["synapse_workspace"] == "syn-ws"
    assert ctx.details["synapse_pool"] == "pool7"
    assert ctx.details["spark_app_id"] == "application_1_0001"
    assert ctx.details["session"] == "batch"  # no IPython kernel in pytest
    tags = shim.context_tags()
    assert tags["spark_aml_bridge.synapse_pool"] == "pool7"
    # Executors get the driver's context through their environment.
    env = shim.executor_env()
    assert env[PLATFORM_HINT_ENV] == "synapse"
    executor = SynapsePlatform({**no_trident, **env}, None, "executor")
    assert executor.detect()
    assert executor.context().details == json.loads(env[PLATFORM_CONTEXT_ENV])
    assert executor.context_tags()["spark_aml_bridge.role"] == "executor"


def test_fabric_context_reads_the_trident_file(tmp_path):
    trident = tmp_path / "trident-context"
    trident.write_text(
        "# Fabric\ntrident.workspace.id=ws-guid\ntrident.lakehouse.id = lh-guid\n"
        "trident.artifact.type: SynapseNotebook\n"
    )
    environ = {**ARCADIA, TRIDENT_CONTEXT_ENV: str(trident), "MLFLOW_TRACKING_URI": "sds://x"}
    shim = FabricPlatform(environ, None, "process")
    details = shim.context().details
    assert details["fabric_workspace_id"] == "ws-guid"
    assert details["fabric_lakehouse_id"] == "lh-guid"
    assert details["fabric_artifact_type"] == "SynapseNotebook"
    assert shim.native_tracking_uri() == "sds://x"
    assert "token-library" not in shim.default_credential_chain()


def test_default_chains_put_explicit_choices_first_and_relay_last():
    synapse = SynapsePlatform().default_credential_chain()
    assert synapse == ["env", "key-vault-sp", "notebookutils", "token-library", "relayed-token"]
    assert FabricPlatform().default_credential_chain()[-1] == "relayed-token"


def test_fabric_says_in_one_sentence_what_it_does_not_support():
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms.synapse.fabric import DUAL_TRACKING_UNSUPPORTED, UNSUPPORTED

    assert all(sentence.count(". ") == 0 for sentence in UNSUPPORTED)
    with pytest.warns(UserWarning, match="not supported on Fabric"):
        FabricPlatform().check_config(resolve_config({"mode": "dual"}, env={}, spark_conf={}))
    assert "mode=workspace" in DUAL_TRACKING_UNSUPPORTED
