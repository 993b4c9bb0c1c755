"""``connect()``, ``disconnect()`` and ``current()``: point MLflow at the workspace and back."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.errors import MlflowMissingError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig
    from spark_aml_bridge.platforms.base import PlatformContext
    from spark_aml_bridge.session import WorkspaceSession
    from spark_aml_bridge.spark import ExecutorLink
    from spark_aml_bridge.workspace import WorkspaceAddress

MIN_MLFLOW = "2.12"
_lock = threading.RLock()
_current: Bridge | None = None


@dataclass
class _SavedState:
    """What connect() changed, so disconnect() can put it back."""

    tracking_uri: str | None
    registry_uri: str | None
    environ: dict[str, str | None] = field(default_factory=dict)


@dataclass(eq=False)
class Bridge:
    """A live connection of this process's MLflow to a workspace."""

    session: WorkspaceSession
    platform: PlatformContext
    mode: str
    _saved: _SavedState
    _executors: ExecutorLink | None = None
    _settings_key: tuple[Any, ...] = ()
    # mode="dual": both sides and the mirror's state (spark_aml_bridge.dual.wiring.DualHandle).
    dual: Any = None

    @property
    def workspace(self) -> WorkspaceAddress:
        return self.session.address

    @property
    def tracking_uri(self) -> str:
        return self.dual.tracking_uri if self.dual is not None else self.session.tracking_uri

    @property
    def registry_uri(self) -> str:
        return self.dual.registry_uri if self.dual is not None else self.session.tracking_uri

    @property
    def identity(self) -> str:
        return self.session.identity

    @property
    def executors_linked(self) -> bool:
        return self._executors is not None

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until every write of this process has reached the workspace (durable writes) or
        the mirror (dual mode); False if `timeout` passed first. Synchronous writes: True."""
        if self.dual is not None:
            return self.dual.flush(timeout)
        from spark_aml_bridge.mlflow_private import cached_tracking_store

        store = cached_tracking_store(self.tracking_uri)
        flush = getattr(store, "flush", None)
        return True if flush is None else flush(timeout)

    def __repr__(self) -> str:
        return (
            f"Bridge(platform={self.platform.describe()}, workspace={self.workspace}, "
            f"identity={self.identity}, mode={self.mode}"
            f"{f' ({self.dual.describe()})' if self.dual is not None else ''}, "
            f"executors={'linked' if self._executors else 'not linked'})"
        )

    __str__ = __repr__

    # -- links a person opens: Azure ML studio (or, on the emulator, its MLflow UI) -----------
    def studio_url(self) -> str:
        """The workspace in Azure ML studio."""
        from spark_aml_bridge import links

        base = links.studio_base(self.workspace, self.session.ca_bundle)
        return links.workspace_link(base, self.workspace, links.session_tenant(self.session))

    def run_url(self, run_id: str) -> str:
        """Where a person sees run `run_id`: Azure ML studio (the emulator: its MLflow UI)."""
        from mlflow.tracking import MlflowClient

        from spark_aml_bridge import links

        run = MlflowClient(self.session.tracking_uri).get_run(run_id)
        base = links.studio_base(self.workspace, self.session.ca_bundle)
        tenant = links.session_tenant(self.session)
        return links.run_link(base, self.workspace, run_id, run.info.experiment_id, tenant)

    def experiment_url(self, experiment_id: str | None = None, *, name: str | None = None) -> str:
        """Where a person sees an experiment, by id or by `name`."""
        from mlflow.tracking import MlflowClient

        from spark_aml_bridge import links
        from spark_aml_bridge.errors import ConfigError

        if (experiment_id is None) == (name is None):
            raise ConfigError(
                "experiment_url() needs one experiment", "pass experiment_id or name=, not both"
            )
        if name is not None:
            experiment = MlflowClient(self.session.tracking_uri).get_experiment_by_name(name)
            if experiment is None:
                raise ConfigError(
                    f"no experiment named {name!r} in workspace {self.workspace}",
                    "check the name (mlflow.search_experiments() lists them)",
                )
            experiment_id = experiment.experiment_id
        base = links.studio_base(self.workspace, self.session.ca_bundle)
        tenant = links.session_tenant(self.session)
        return links.experiment_link(base, self.workspace, str(experiment_id), tenant)


def require_mlflow() -> Any:
    """Import MLflow, or say exactly how to get a supported one."""
    try:
        import mlflow
    except ImportError:
        raise MlflowMissingError(
            "MLflow is not installed in this Python environment",
            "pip install 'spark-aml-bridge[mlflow]' "
            "(on Databricks/Synapse, use the MLflow the runtime ships)",
        ) from None
    from packaging.version import Version

    if Version(mlflow.__version__) < Version(MIN_MLFLOW):
        raise MlflowMissingError(
            f"MLflow {mlflow.__version__} is older than the supported {MIN_MLFLOW}",
            f"pip install 'mlflow>={MIN_MLFLOW}' (or 'mlflow-skinny>={MIN_MLFLOW}')",
        )
    return mlflow


def connect(
    workspace: str | None = None,
    *,
    credential: Any = None,
    subscription_id: str | None = None,
    resource_group: str | None = None,
    workspace_name: str | None = None,
    region: str | None = None,
    mode: str | None = None,
    **settings: Any,
) -> Bridge:
    """Point this process's MLflow (and its Spark executors) at an Azure ML workspace.

    `workspace` is an ARM id, or an ``azureml://`` or ``https://`` tracking URI; or give
    `subscription_id`, `resource_group` and `workspace_name` (and `region` to skip ARM).
    `credential` is an azure-identity ``TokenCredential`` or a spec string (``env``,
    ``managed-identity[:<client-id>]``, ``azure-cli``, ``service-principal[:<tenant>/<client>]``,
    ``device-code``). Any other setting of ``spark_aml_bridge.config`` may be passed by name.
    Calling it again with the same settings returns the same bridge.
    """
    global _current
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms import detect_platform
    from spark_aml_bridge.session import open_session, set_connected

    mlflow = require_mlflow()
    explicit = dict(
        settings,
        workspace=workspace,
        credential=credential,
        subscription_id=subscription_id,
        resource_group=resource_group,
        workspace_name=workspace_name,
        region=region,
        mode=mode,
    )
    platform = detect_platform()
    config = resolve_config(explicit, platform_defaults=platform.platform_defaults())
    key = _settings_key(config, credential)
    with _lock:
        if _current is not None and _current._settings_key == key:
            _point_mlflow(mlflow, _current.tracking_uri, _current.registry_uri)
            return _current
        if _current is not None:
            disconnect()
        platform.check_config(config)
        session = open_session(config, platform)
        from spark_aml_bridge.azureml.ownership import ensure_our_plugins

        ensure_our_plugins()
        dual = None
        if config.mode == "dual":
            from spark_aml_bridge.dual.wiring import dual_tracking

            dual = dual_tracking(config, platform, session)
        saved = _save_state()
        if dual is not None:
            _point_mlflow(mlflow, dual.tracking_uri, dual.registry_uri)
        else:
            _point_mlflow(mlflow, session.tracking_uri)
        for name, value in config.to_env().items():
            saved.environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        # The store sets it (links.take_over_run_links): disconnect() puts it back.
        from spark_aml_bridge.links import MLFLOW_SUPPRESS_LINKS

        saved.environ.setdefault(MLFLOW_SUPPRESS_LINKS, os.environ.get(MLFLOW_SUPPRESS_LINKS))
        if config.durable_writes and config.mode == "workspace":
            # MLflow 3 prints a run link at end_run after reading the run (which would wait for
            # its pending writes); that link is no AML studio page anyway.
            name = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
            saved.environ.setdefault(name, os.environ.get(name))
            os.environ[name] = "true"
        bridge = Bridge(session, platform.context(), config.mode, saved, _settings_key=key)
        bridge.dual = dual
        if config.executors:
            from spark_aml_bridge.spark import link_executors

            bridge._executors = link_executors(session)
        if dual is not None:
            from spark_aml_bridge.dual.wiring import extend_executor_env, start

            extend_executor_env(bridge._executors, {"MLFLOW_TRACKING_URI": dual.tracking_uri})
            start(dual)
        _current = bridge
        set_connected(session)
        return bridge


def disconnect() -> None:
    """Put MLflow's tracking/registry URIs, env and executors back as they were before connect()."""
    global _current
    with _lock:
        bridge, _current = _current, None
        if bridge is None:
            return
        from spark_aml_bridge.session import set_connected

        set_connected(None)
        if bridge._executors is not None:
            bridge._executors.undo()
        import mlflow

        saved = bridge._saved
        mlflow.set_tracking_uri(saved.tracking_uri)
        mlflow.set_registry_uri(saved.registry_uri)
        # The setters also touch MLFLOW_*_URI env vars: put every variable back as it was.
        for name, value in saved.environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def current() -> Bridge | None:
    """The live bridge of this process, if connect() was called."""
    return _current


def _settings_key(config: BridgeConfig, credential: Any) -> tuple[Any, ...]:
    return config.identity() + (("credential-object", id(credential)),)


def _save_state() -> _SavedState:
    # Read (never written) so disconnect() can tell "unset" from "set to the default".
    from spark_aml_bridge.mlflow_private import set_uris

    saved = _SavedState(*set_uris())
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        saved.environ[name] = os.environ.get(name)
    return saved


def _point_mlflow(mlflow: Any, uri: str, registry_uri: str | None = None) -> None:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry_uri or uri)
