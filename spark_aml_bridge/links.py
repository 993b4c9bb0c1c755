"""Links a person opens in a browser: a run or experiment in Azure ML studio (or the emulator's UI).

MLflow's own "View run … at" line is built from the REST host (`<host>/#/experiments/…`),
which on Azure ML is the authenticated API endpoint, not a UI. The studio host comes from the
cloud table for Azure's clouds, else from the workspace's discovery document (its "studio"
entry; the emulator names its MLflow UI there). Studio links use the form studio and the Azure
ML SDK use (`/runs/<run>?wsid=…&tid=…`); an MLflow UI gets MLflow's hash routes.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any
from urllib.parse import quote

# MLflow >= 3 skips its own run links when this is true (documented environment variable).
MLFLOW_SUPPRESS_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
# MLflow 3.9+ UI: the view (model training vs GenAI) comes from this URL parameter.
ML_WORKFLOW = "workflowType=machine_learning"

_lock = threading.Lock()
_studio_by_host: dict[str, str] = {}
_printing = {"owned": False}


def studio_base(address: Any, ca_bundle: str | None = None, timeout: float = 10) -> str:
    """The studio (or MLflow UI) base URL for a workspace address, without a trailing slash."""
    from spark_aml_bridge.clouds import cloud_for_aml_host

    host = address.host or ""
    cloud = cloud_for_aml_host(host)
    if cloud is not None or not host:
        from spark_aml_bridge.clouds import get_cloud

        return (cloud or get_cloud()).studio_url
    with _lock:
        known = _studio_by_host.get(host.lower())
    if known is None:
        known = _discover_studio(host, ca_bundle, timeout)
        with _lock:
            _studio_by_host[host.lower()] = known
    return known


def _discover_studio(host: str, ca_bundle: str | None, timeout: float) -> str:
    import requests

    from spark_aml_bridge.clouds import get_cloud

    try:
        response = requests.get(
            f"https://{host}/discovery", verify=ca_bundle or True, timeout=timeout
        )
        studio = response.json().get("studio") if response.ok else None
    except (requests.RequestException, ValueError):
        studio = None
    return str(studio).rstrip("/") if studio else get_cloud().studio_url


def is_studio(base: str) -> bool:
    from spark_aml_bridge.clouds import cloud_for_studio_url

    return cloud_for_studio_url(base) is not None


def _wsid(address: Any, tenant_id: str | None) -> str:
    # The workspace as studio names it: lower-case "resourcegroups", no provider segment.
    wsid = (
        f"/subscriptions/{address.subscription_id}/resourcegroups/{address.resource_group}"
        f"/workspaces/{address.workspace_name}"
    )
    query = f"?wsid={quote(wsid, safe='/')}"
    return query + (f"&tid={quote(tenant_id)}" if tenant_id else "")


def run_link(
    base: str, address: Any, run_id: str, experiment_id: str, tenant_id: str | None = None
) -> str:
    """The address of one run, in studio's form or (for an MLflow UI) MLflow's."""
    if is_studio(base):
        return f"{base}/runs/{quote(run_id)}{_wsid(address, tenant_id)}"
    return f"{base}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}?{ML_WORKFLOW}"


def experiment_link(
    base: str, address: Any, experiment_id: str, tenant_id: str | None = None
) -> str:
    """The address of one experiment, in studio's form or (for an MLflow UI) MLflow's."""
    if is_studio(base):
        return f"{base}/experiments/id/{quote(experiment_id)}{_wsid(address, tenant_id)}"
    return f"{base}/#/experiments/{quote(experiment_id)}?{ML_WORKFLOW}"


def workspace_link(base: str, address: Any, tenant_id: str | None = None) -> str:
    """The workspace's home in studio (or the MLflow UI's experiment list)."""
    if is_studio(base):
        return f"{base}/{_wsid(address, tenant_id)}"
    return f"{base}/#/experiments?{ML_WORKFLOW}"


def session_tenant(session: Any) -> str | None:
    """The tenant id of the session's token (studio needs it to pick the directory)."""
    from spark_aml_bridge.credentials.identity import token_claims
    from spark_aml_bridge.errors import BridgeError

    try:
        return token_claims(session.tokens.token()).get("tid")
    except BridgeError:
        return None


# -- the "View run" lines MLflow prints at the end of a run -------------------------------------
def take_over_run_links() -> None:
    """Have MLflow 3 skip its run links (they name the REST endpoint); the store prints ours.

    Only when the user has not set the variable: their choice wins.
    """
    with _lock:
        if os.environ.get(MLFLOW_SUPPRESS_LINKS) is None:
            os.environ[MLFLOW_SUPPRESS_LINKS] = "true"
            _printing["owned"] = True


def prints_run_links() -> bool:
    return _printing["owned"] and os.environ.get(MLFLOW_SUPPRESS_LINKS) == "true"


def print_run_links(session: Any, run: Any) -> None:
    """Write the studio run and experiment links, as MLflow writes its own."""
    base = studio_base(session.address, session.ca_bundle)
    tenant = session_tenant(session)
    info = run.info
    where = "Azure ML studio" if is_studio(base) else "the workspace UI"
    run_url = run_link(base, session.address, info.run_id, info.experiment_id, tenant)
    experiment_url = experiment_link(base, session.address, info.experiment_id, tenant)
    sys.stdout.write(f"🏃 View run {info.run_name} in {where}: {run_url}\n")
    sys.stdout.write(f"🧪 View experiment in {where}: {experiment_url}\n")
