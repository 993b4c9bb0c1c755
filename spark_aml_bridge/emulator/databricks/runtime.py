"""The Databricks runtime double: make this process (and its Spark executors) look like a
Databricks driver, for tests and for developing Databricks notebooks locally.

    double = DatabricksRuntimeDouble.from_emulator(emulator.info, state_dir, workload="notebook",
                                                   secrets={"aml": {"sp-secret": "..."}})
    with double.activated(spark=spark):
        ...  # detection, dbutils, service credentials, Spark conf: as on a Databricks driver

What it sets (and puts back on ``deactivate()``):

- env: ``DATABRICKS_RUNTIME_VERSION`` (or, for Databricks Container Services, only the
  ``DBR_VERSION`` file), ``DATABRICKS_ENV_VERSION`` on serverless, ``SPARK_CONNECT_MODE_ENABLED``
  for standard (shared) access and serverless, ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` of the
  emulator's Databricks workspace double, the cluster's own environment variables (``env``);
- ``dbutils``: in the IPython user namespace when a shell runs, and through a ``dbruntime``
  module (what ``databricks.sdk.runtime`` imports on a real runtime) for plain Python files;
  the REPL context ``dbruntime.databricks_repl_context``;
- ``databricks.service_credentials`` (the UDF-side service credential API) for executors;
- Spark (classic compute only): ``spark.databricks.clusterUsageTags.*`` and
  ``spark.databricks.workspaceUrl`` conf, notebook/job task-local properties, and the env and
  ``PYTHONPATH`` every executor of a Databricks cluster has.

Not emulated: the Databricks control plane, DBFS, Unity Catalog, clusters starting, secret
redaction in notebook output, the py4j gateway (objects are plain Python with the same methods).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.databricks.dbutils import DbUtils

SPEC_ENV = "DATABRICKS_RUNTIME_DOUBLE"  # path of the active double's spec (JSON), for children
SITE_DIR = str(Path(__file__).resolve().parent / "site")
_DBR_MODULES = ("dbruntime", "databricks.sdk.runtime", "databricks.service_credentials")

_active: DatabricksRuntimeDouble | None = None


def default_spec() -> dict[str, Any]:
    return {
        "workload": "notebook",  # notebook | job | process
        "compute": "classic",  # classic | shared | serverless
        "container": False,  # Databricks Container Services: version file, no env var
        "runtime_version": "15.4.x-scala2.12",
        "env_version": "2",  # serverless environment version
        "workspace_url": "adb-1234567890123456.7.azuredatabricks.net",
        "org_id": "1234567890123456",
        "cluster_id": "0611-101530-emu1abcd",
        "cluster_name": "ml-shared",
        "user": "data.scientist@example.com",
        "notebook_path": "/Users/data.scientist@example.com/train",
        "notebook_id": "3141592653589793",
        "job_id": "731",
        "job_run_id": "90417",
        "api_url": None,
        "api_token": None,
        "secrets": {},
        "denied_scopes": [],
        "service_credentials": {},
        "denied_service_credentials": [],
        "passthrough": None,
        "env": {},
    }


class ReplContext:
    """``dbruntime.databricks_repl_context.get_context()``: the attributes MLflow reads."""

    def __init__(self, spec: dict[str, Any]) -> None:
        workload = spec.get("workload")
        notebook = workload == "notebook" or (workload == "job" and spec.get("notebook_path"))
        job = workload == "job"
        self.isInNotebook = bool(notebook)
        self.isInJob = job
        self.isInCluster = spec.get("compute") != "serverless"
        self.notebookId = spec.get("notebook_id") if notebook else None
        self.notebookPath = spec.get("notebook_path") if notebook else None
        self.clusterId = spec.get("cluster_id") if spec.get("compute") != "serverless" else None
        self.jobId = spec.get("job_id") if job else None
        self.idInJob = spec.get("job_run_id") if job else None
        self.jobTaskType = ("notebook" if notebook else "python") if job else None
        self.apiUrl = spec.get("api_url")
        self.apiToken = spec.get("api_token")
        self.sslTrustAll = False
        self.workspaceId = spec.get("org_id")
        self.workspaceUrl = spec.get("workspace_url")
        self.browserHostName = spec.get("workspace_url")
        self.replId = "ReplId-emulator"
        self.jobGroupId = None
        self.aclPathOfAclRoot = f"/workspace/{self.notebookId}" if self.notebookId else None

    def __repr__(self) -> str:
        return "<ReplContext (Databricks runtime double)>"


class DatabricksRuntimeDouble:
    """One emulated Databricks driver; `activate()` applies it to this process."""

    def __init__(self, spec: dict[str, Any], state_dir: str | os.PathLike[str]) -> None:
        self.spec = {**default_spec(), **spec}
        self.state_dir = Path(state_dir)
        self.dbutils = DbUtils(self.spec)
        self.repl_context = ReplContext(self.spec)
        self._undo: list[Any] = []

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_emulator(
        cls,
        info: dict[str, Any],
        state_dir: str | os.PathLike[str],
        *,
        service_credentials: tuple[str, ...] = ("aml-connector",),
        passthrough: bool = False,
        **spec: Any,
    ) -> DatabricksRuntimeDouble:
        """A double whose service credentials and passthrough token come from the emulator's
        managed identity, and whose ``apiUrl``/``apiToken`` are its Databricks workspace double."""
        identity = {
            "endpoint": info["managed_identity_endpoint"],
            "header": info["managed_identity_header"],
            "ca_bundle": info["ca_bundle"],
            "client_id": info.get("managed_identity_client_id", ""),
        }
        base: dict[str, Any] = {
            "api_url": info.get("databricks_host"),
            "api_token": info.get("databricks_token"),
            "service_credentials": {name: identity for name in service_credentials},
            "passthrough": identity if passthrough else None,
        }
        base.update(spec)
        return cls(base, state_dir)

    @classmethod
    def from_spec_file(cls, path: str | os.PathLike[str]) -> DatabricksRuntimeDouble:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(spec, Path(path).parent)

    # -- derived facts -------------------------------------------------------------------------

    @property
    def serverless(self) -> bool:
        return self.spec["compute"] == "serverless"

    @property
    def spark_connect(self) -> bool:
        return self.spec["compute"] in ("shared", "serverless")

    @property
    def spec_path(self) -> Path:
        return self.state_dir / "databricks-runtime.json"

    @property
    def version_file(self) -> Path:
        return self.state_dir / "DBR_VERSION"

    def runtime_version(self) -> str:
        if self.serverless:
            return f"client.{self.spec['env_version']}"
        return str(self.spec["runtime_version"])

    def cluster_name(self) -> str:
        if self.spec["workload"] == "job" and self.spec.get("cluster_name") in (None, "ml-shared"):
            return f"job-{self.spec['job_id']}-run-{self.spec['job_run_id']}"
        return str(self.spec["cluster_name"])

    def environment(self) -> dict[str, str]:
        """The environment variables a driver (and each executor) of this compute has."""
        env: dict[str, str] = {SPEC_ENV: str(self.spec_path)}
        if self.serverless:
            env["DATABRICKS_ENV_VERSION"] = str(self.spec["env_version"])
            env["DATABRICKS_RUNTIME_VERSION"] = self.runtime_version()
        elif not self.spec["container"]:
            env["DATABRICKS_RUNTIME_VERSION"] = self.runtime_version()
        if self.spark_connect:
            env["SPARK_CONNECT_MODE_ENABLED"] = "1"
        if self.spec.get("api_url") and self.spec.get("api_token"):
            env["DATABRICKS_HOST"] = str(self.spec["api_url"])
            env["DATABRICKS_TOKEN"] = str(self.spec["api_token"])
        env.update({k: str(v) for k, v in (self.spec.get("env") or {}).items()})
        return env

    def spark_conf(self) -> dict[str, str]:
        return {
            "spark.databricks.clusterUsageTags.clusterId": str(self.spec["cluster_id"]),
            "spark.databricks.clusterUsageTags.clusterName": self.cluster_name(),
            "spark.databricks.clusterUsageTags.orgId": str(self.spec["org_id"]),
            "spark.databricks.clusterUsageTags.sparkVersion": self.runtime_version(),
            "spark.databricks.workspaceUrl": str(self.spec["workspace_url"]),
        }

    def local_properties(self) -> dict[str, str]:
        spec = self.spec
        props: dict[str, str] = {}
        if spec["workload"] == "notebook" or (spec["workload"] == "job" and spec["notebook_path"]):
            props["spark.databricks.notebook.id"] = str(spec["notebook_id"])
            props["spark.databricks.notebook.path"] = str(spec["notebook_path"])
        if spec["workload"] == "job":
            props["spark.databricks.job.id"] = str(spec["job_id"])
            props["spark.databricks.job.runId"] = str(spec["job_run_id"])
        if spec.get("api_url"):
            props["spark.databricks.api.url"] = str(spec["api_url"])
        return props

    # -- activation ----------------------------------------------------------------------------

    def write_spec(self) -> Path:
        """The spec file children and executors read (0600: it holds the scope's secrets)."""
        from spark_aml_bridge.emulator.files import write_json

        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.spec_path, self.spec)
        if self.spec["container"]:
            self.version_file.write_text(self.runtime_version() + "\n", encoding="utf-8")
        return self.spec_path

    def activate(self, spark: Any = None) -> DatabricksRuntimeDouble:
        global _active
        if _active is not None and _active is not self:
            _active.deactivate()
        self.write_spec()
        for name, value in self.environment().items():
            self._set_env(name, value)
        self._add_site()
        self._into_ipython()
        if spark is not None and not self.spark_connect:
            self._into_spark(spark)
        _active = self
        return self

    def deactivate(self) -> None:
        global _active
        while self._undo:
            undo = self._undo.pop()
            with contextlib.suppress(Exception):
                undo()
        _purge_runtime_modules()
        if _active is self:
            _active = None

    @contextlib.contextmanager
    def activated(self, spark: Any = None) -> Iterator[DatabricksRuntimeDouble]:
        self.activate(spark)
        try:
            yield self
        finally:
            self.deactivate()

    def _set_env(self, name: str, value: str) -> None:
        previous = os.environ.get(name)
        os.environ[name] = value

        def undo() -> None:
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous

        self._undo.append(undo)

    def _add_site(self) -> None:
        if SITE_DIR not in sys.path:
            sys.path.insert(0, SITE_DIR)
            self._undo.append(lambda: sys.path.remove(SITE_DIR))
        package = sys.modules.get("databricks")
        extra = os.path.join(SITE_DIR, "databricks")
        path = getattr(package, "__path__", None)
        if path is not None and extra not in list(path):
            path.append(extra)
            self._undo.append(lambda: path.remove(extra))
        _purge_runtime_modules()

    def _into_ipython(self) -> None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None:
            return
        namespace = shell.user_ns
        missing = object()
        previous = namespace.get("dbutils", missing)
        namespace["dbutils"] = self.dbutils

        def undo() -> None:
            if previous is missing:
                namespace.pop("dbutils", None)
            else:
                namespace["dbutils"] = previous

        self._undo.append(undo)

    def _into_spark(self, spark: Any) -> None:
        conf = spark.conf
        for key, value in self.spark_conf().items():
            previous = conf.get(key, None)
            conf.set(key, value)
            self._undo.append(
                (lambda k, p: lambda: conf.unset(k) if p is None else conf.set(k, p))(key, previous)
            )
        sc = spark.sparkContext
        for key, value in self.local_properties().items():
            previous = sc.getLocalProperty(key)
            sc.setLocalProperty(key, value)
            self._undo.append((lambda k, p: lambda: sc.setLocalProperty(k, p))(key, previous))
        # What every executor of a Databricks cluster has: its env, and the runtime's modules.
        executor_env = dict(self.environment())
        executor_env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        existing = sc.environment.get("PYTHONPATH")
        executor_env["PYTHONPATH"] = SITE_DIR + (os.pathsep + existing if existing else "")
        for key, value in executor_env.items():
            self._undo.append(_restorer(sc.environment, key))
            sc.environment[key] = value


def _restorer(mapping: Any, key: str) -> Any:
    missing = object()
    previous = mapping.get(key, missing)

    def undo() -> None:
        if previous is missing:
            mapping.pop(key, None)
        else:
            mapping[key] = previous

    return undo


def _purge_runtime_modules() -> None:
    """Forget runtime modules imported under another double (or none), as a fresh process would."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in _DBR_MODULES):
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            # `from parent import child` would still find the old module as an attribute.
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is not None:
                with contextlib.suppress(AttributeError):
                    delattr(sys.modules[parent], child)


def active_double() -> DatabricksRuntimeDouble | None:
    """The double active in this process, or the one named by the environment (children)."""
    global _active
    if _active is None and os.environ.get(SPEC_ENV):
        with contextlib.suppress(OSError, ValueError):
            _active = DatabricksRuntimeDouble.from_spec_file(os.environ[SPEC_ENV])
    return _active


def activate_from_env() -> DatabricksRuntimeDouble | None:
    """Activate the double named by ``DATABRICKS_RUNTIME_DOUBLE`` (an IPython startup file or a
    child process calls this; without the variable it does nothing)."""
    path = os.environ.get(SPEC_ENV)
    if not path:
        return None
    double = DatabricksRuntimeDouble.from_spec_file(path)
    return double.activate()


IPYTHON_STARTUP = (
    "# Written by spark_aml_bridge: puts the Databricks runtime double's dbutils into the\n"
    "# notebook namespace before the first cell, as Databricks does.\n"
    "from spark_aml_bridge.emulator.databricks.runtime import activate_from_env\n"
    "activate_from_env()\n"
)


def write_ipython_startup(ipython_dir: str | os.PathLike[str]) -> Path:
    """An ``IPYTHONDIR`` whose startup file activates the double named by the environment."""
    startup = Path(ipython_dir) / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    path = startup / "00-databricks-runtime-double.py"
    path.write_text(IPYTHON_STARTUP, encoding="utf-8")
    return path
