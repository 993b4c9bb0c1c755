"""Submit a one-time Databricks run (databricks-sdk ``jobs.submit``) that tracks to the workspace.

The run's new cluster carries the bridge settings in ``spark_env_vars`` (driver and every worker),
generated from config.py's one table by ``initscript.databricks_cluster_env``; secrets only as
``{{secrets/<scope>/<key>}}`` references, which Databricks resolves when the cluster starts. An
existing cluster's environment cannot be set per run: it must already carry the settings (its
init script from ``spark-aml-bridge init-script databricks``, or its own environment variables).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spark_aml_bridge._version import __version__
from spark_aml_bridge.errors import BridgeError, ConfigError

_log = logging.getLogger(__name__)

TASK_KINDS = ("python", "notebook", "wheel")
# How submission authenticates to the Databricks workspace: the SDK's own configuration.
SDK_AUTHENTICATION = (
    "Authenticates like the Databricks SDK/CLI (DATABRICKS_HOST, DATABRICKS_TOKEN, "
    "~/.databrickscfg)."
)


@dataclass
class SubmittedRun:
    run_id: int
    payload: dict[str, Any]  # what was sent (no secret values: references only)
    run_page_url: str | None = None
    state: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"submitted Databricks run {self.run_id}"
        if self.run_page_url:
            text += f": {self.run_page_url}"
        if self.state:
            text += f" ({self.state})"
        return text


def _library(spec: str) -> Any:
    from databricks.sdk.service.compute import Library, PythonPyPiLibrary

    if spec.endswith(".whl"):
        return Library(whl=spec)
    return Library(pypi=PythonPyPiLibrary(package=spec))


def _init_script_info(path: str) -> Any:
    from databricks.sdk.service.compute import (
        Adlsgen2Info,
        DbfsStorageInfo,
        InitScriptInfo,
        VolumesStorageInfo,
        WorkspaceStorageInfo,
    )

    if path.startswith("/Volumes/"):
        return InitScriptInfo(volumes=VolumesStorageInfo(destination=path))
    if path.startswith("/Workspace/"):
        return InitScriptInfo(workspace=WorkspaceStorageInfo(destination=path))
    if path.startswith("abfss://"):
        return InitScriptInfo(abfss=Adlsgen2Info(destination=path))
    if path.startswith("dbfs:/"):
        return InitScriptInfo(dbfs=DbfsStorageInfo(destination=path))
    raise ConfigError(
        f"init script {path!r} is not in a supported location",
        "put it in a Unity Catalog volume (/Volumes/...), workspace files (/Workspace/...) or "
        "abfss://",
    )


def build_submit_task(
    *,
    kind: str,
    target: str,
    parameters: Sequence[str] = (),
    entry_point: str | None = None,
    settings: Mapping[str, Any] | None = None,
    client_secret_ref: str | None = None,
    existing_cluster_id: str | None = None,
    spark_version: str | None = None,
    node_type_id: str | None = None,
    num_workers: int = 1,
    libraries: Sequence[str] | None = None,
    init_script: str | None = None,
    task_key: str = "main",
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, list[str]]:
    """(SDK ``SubmitTask``, warnings); `kind`: python (file), notebook (path), wheel (package)."""
    from databricks.sdk.service.compute import ClusterSpec
    from databricks.sdk.service.jobs import (
        NotebookTask,
        PythonWheelTask,
        SparkPythonTask,
        SubmitTask,
    )

    from spark_aml_bridge.platforms.databricks.initscript import databricks_cluster_env

    if kind not in TASK_KINDS:
        raise ConfigError(f"unknown task kind {kind!r}", "use one of: " + ", ".join(TASK_KINDS))
    if bool(existing_cluster_id) == bool(spark_version):
        raise ConfigError(
            "a run needs exactly one cluster: an existing one or a new one",
            "pass --existing-cluster-id ID, or --spark-version (and --node-type-id) for a new one",
        )
    cluster_env = databricks_cluster_env(
        settings, client_secret_ref=client_secret_ref, environ=environ
    )
    warnings: list[str] = []
    task: dict[str, Any] = {"task_key": task_key}
    if kind == "python":
        task["spark_python_task"] = SparkPythonTask(python_file=target, parameters=list(parameters))
    elif kind == "notebook":
        base = dict(item.partition("=")[::2] for item in parameters)
        task["notebook_task"] = NotebookTask(notebook_path=target, base_parameters=base or None)
    else:
        if not entry_point:
            raise ConfigError("a wheel task needs an entry point", "pass --entry-point NAME")
        task["python_wheel_task"] = PythonWheelTask(
            package_name=target, entry_point=entry_point, parameters=list(parameters) or None
        )
    if existing_cluster_id:
        task["existing_cluster_id"] = existing_cluster_id
        warnings.append(
            f"cluster {existing_cluster_id} keeps its own environment (a run cannot set it): it "
            "must carry the settings already, through the init script from `spark-aml-bridge "
            "init-script databricks` or its environment variables"
        )
    else:
        init_scripts = [_init_script_info(init_script)] if init_script else None
        task["new_cluster"] = ClusterSpec(
            spark_version=spark_version,
            node_type_id=node_type_id,
            num_workers=num_workers,
            spark_env_vars=cluster_env.spark_env_vars(),
            init_scripts=init_scripts,
        )
    if libraries is None:
        # With an init script the package is already installed, leaving the runtime alone.
        installed = init_script or existing_cluster_id
        libraries = () if installed else (f"spark-aml-bridge=={__version__}",)
    if libraries:
        task["libraries"] = [_library(spec) for spec in libraries]
    return SubmitTask(**task), warnings


def submit_databricks_run(
    kind: str,
    target: str,
    *,
    client: Any = None,
    host: str | None = None,
    profile: str | None = None,
    run_name: str | None = None,
    wait: bool = False,
    timeout_minutes: float = 60,
    idempotency_token: str | None = None,
    **task_options: Any,
) -> SubmittedRun:
    """Submit a one-time run through ``WorkspaceClient().jobs.submit``.

    `client` is a databricks-sdk ``WorkspaceClient``; by default one is built from `host` /
    `profile` and the SDK's own auth chain (``DATABRICKS_TOKEN``, ~/.databrickscfg, Azure CLI...).
    `task_options` are those of ``build_submit_task`` (settings, cluster, libraries, ...).
    """
    import datetime

    from databricks.sdk.errors import DatabricksError

    task, warnings = build_submit_task(kind=kind, target=target, **task_options)
    for warning in warnings:
        _log.warning(warning)
    if client is None:
        from databricks.sdk import WorkspaceClient

        kwargs = {k: v for k, v in (("host", host), ("profile", profile)) if v}
        client = WorkspaceClient(**kwargs)
    name = run_name or f"spark-aml-bridge {kind} run"
    payload = {"run_name": name, "tasks": [task.as_dict()]}
    _assert_no_secret_values(payload)
    try:
        waiter = client.jobs.submit(
            run_name=name, tasks=[task], idempotency_token=idempotency_token
        )
        run_id = int(waiter.run_id)
        state = None
        if wait:
            run = waiter.result(timeout=datetime.timedelta(minutes=timeout_minutes))
            state = _state(run)
        run_page_url = client.jobs.get_run(run_id).run_page_url
    except DatabricksError as exc:
        host_text = getattr(getattr(client, "config", None), "host", None) or host or "?"
        raise BridgeError(
            f"the Databricks workspace at {host_text} refused the run: {exc}",
            "check DATABRICKS_HOST / --host (the workspace URL), the token or profile, and that "
            "you may submit runs there",
        ) from None
    return SubmittedRun(run_id, payload, run_page_url, state, warnings)


def _state(run: Any) -> str | None:
    state = getattr(run, "state", None)
    result = getattr(state, "result_state", None)
    life = getattr(state, "life_cycle_state", None)
    value = result or life
    return getattr(value, "value", value)


def _assert_no_secret_values(payload: dict[str, Any]) -> None:
    """Belt and braces: every env value of a sensitive-looking name must be a secret reference."""
    from spark_aml_bridge.config import SETTINGS
    from spark_aml_bridge.platforms.databricks.credentials import is_secret_reference

    sensitive = {s.env for s in SETTINGS if s.sensitive} | {"AZURE_CLIENT_SECRET"}
    for task in payload["tasks"]:
        env = (task.get("new_cluster") or {}).get("spark_env_vars") or {}
        for name in sensitive & set(env):
            if not is_secret_reference(env[name]):
                raise ConfigError(
                    f"{name} in the run's cluster environment is not a secret reference",
                    "pass secrets as {{secrets/<scope>/<key>}} references only",
                )
    json.dumps(payload)  # it must serialise as sent
