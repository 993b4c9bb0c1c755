"""Links a person opens: Azure ML studio for real workspaces (each cloud's host), the emulator's
MLflow UI for the emulator; MLflow's own "View run" lines replaced by the bridge's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from urllib.parse import parse_qs, urlsplit

import pytest

from spark_aml_bridge import links
from spark_aml_bridge.clouds import CLOUDS, cloud_for_studio_url
from spark_aml_bridge.workspace import WorkspaceAddress

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RUN = "3f2b7d0e-9a1c-4f5e-8d6b-1c2d3e4f5a6b"
EXPERIMENT = "7c6a4d2e-1111-2222-3333-444455556666"


def _address(host: str) -> WorkspaceAddress:
    return WorkspaceAddress(SUB, "rg-ml", "ws-prod", host=host)


@pytest.mark.parametrize(
    ("host", "studio"),
    [
        ("westeurope.api.azureml.ms", "https://ml.azure.com"),
        ("chinaeast2.api.ml.azure.cn", "https://studio.ml.azure.cn"),
        ("usgovvirginia.api.ml.azure.us", "https://ml.azure.us"),
    ],
)
def test_studio_links_per_cloud(host: str, studio: str) -> None:
    address = _address(host)
    base = links.studio_base(address)  # known clouds: no request
    assert base == studio and links.is_studio(base)

    run = urlsplit(links.run_link(base, address, RUN, EXPERIMENT, TENANT))
    assert f"{run.scheme}://{run.netloc}" == studio
    assert run.path == f"/runs/{RUN}" and not run.fragment
    query = parse_qs(run.query)
    assert query["wsid"] == [f"/subscriptions/{SUB}/resourcegroups/rg-ml/workspaces/ws-prod"]
    assert query["tid"] == [TENANT]

    experiment = urlsplit(links.experiment_link(base, address, EXPERIMENT, TENANT))
    assert experiment.path == f"/experiments/id/{EXPERIMENT}"
    assert parse_qs(experiment.query)["wsid"] == query["wsid"]

    home = urlsplit(links.workspace_link(base, address, TENANT))
    assert home.path == "/" and parse_qs(home.query) == query


def test_every_cloud_has_its_own_studio_host() -> None:
    hosts = {cloud.studio_url for cloud in CLOUDS.values()}
    assert len(hosts) == len(CLOUDS)
    for cloud in CLOUDS.values():
        assert cloud_for_studio_url(cloud.studio_url + "/runs/x") is cloud
    assert cloud_for_studio_url("http://127.0.0.1:5000/") is None


def test_links_without_tenant_leave_tid_out() -> None:
    address = _address("eastus.api.azureml.ms")
    url = links.run_link(links.studio_base(address), address, RUN, EXPERIMENT)
    assert "tid=" not in url and "wsid=" in url


def test_emulator_links_open_its_mlflow_ui_in_the_training_view(use_emulator) -> None:
    import spark_aml_bridge

    bridge = spark_aml_bridge.connect()
    ui = use_emulator.info["ui_url"].rstrip("/")
    # The emulator's discovery document names its UI as the workspace's studio.
    assert links.studio_base(bridge.workspace, bridge.session.ca_bundle) == ui
    assert not links.is_studio(ui)

    import mlflow

    mlflow.set_experiment("links-emulator")
    with mlflow.start_run(run_name="linked") as run:
        mlflow.log_metric("m", 1.0)
    info = run.info
    assert bridge.run_url(info.run_id) == (
        f"{ui}/#/experiments/{info.experiment_id}/runs/{info.run_id}?workflowType=machine_learning"
    )
    expected_experiment = f"{ui}/#/experiments/{info.experiment_id}?workflowType=machine_learning"
    assert bridge.experiment_url(info.experiment_id) == expected_experiment
    assert bridge.experiment_url(name="links-emulator") == expected_experiment
    assert bridge.studio_url() == f"{ui}/#/experiments?workflowType=machine_learning"
    from spark_aml_bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="no experiment named"):
        bridge.experiment_url(name="no-such-experiment")


def test_view_run_lines_point_at_the_ui_not_the_rest_endpoint(use_emulator) -> None:
    """A fresh process, as a user runs it: MLflow's own lines (the authenticated REST host)
    are replaced by the bridge's, which open."""
    script = textwrap.dedent(
        """
        import mlflow, spark_aml_bridge
        spark_aml_bridge.connect()
        mlflow.set_experiment("links-print")
        with mlflow.start_run(run_name="printed"):
            mlflow.log_param("p", 1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=True
    )
    lines = [line for line in done.stdout.splitlines() if "View " in line]
    ui = use_emulator.info["ui_url"].rstrip("/")
    assert any(line.startswith("🏃 View run printed in the workspace UI: " + ui) for line in lines)
    assert any(line.startswith("🧪 View experiment in the workspace UI: " + ui) for line in lines)
    import mlflow

    if int(mlflow.__version__.split(".", 1)[0]) >= 3:
        # MLflow 3 honours MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT: only the bridge's lines remain.
        assert len(lines) == 2, lines
        assert "/mlflow/v2.0/" not in done.stdout


def test_user_choice_to_suppress_links_wins(use_emulator) -> None:
    script = textwrap.dedent(
        """
        import mlflow, spark_aml_bridge
        spark_aml_bridge.connect()
        with mlflow.start_run(run_name="quiet"):
            pass
        """
    )
    env = {**__import__("os").environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "View run quiet in" not in done.stdout


def test_doctor_prints_the_studio_link(use_emulator, capsys) -> None:
    from spark_aml_bridge.doctor import doctor

    assert doctor() == 0
    out = capsys.readouterr().out
    ui = use_emulator.info["ui_url"].rstrip("/")
    assert f"[ok  ] studio: {ui}/#/experiments?workflowType=machine_learning" in out
