"""Activate the Synapse (or Fabric) runtime double in this process, or build the environment of a
process that should look like a Synapse driver.

    runtime = SynapseRuntime(emulator.info, tmp_path, session="notebook")
    with runtime.activated(spark):      # env, notebookutils on sys.path, Spark conf, TokenLibrary
        spark_aml_bridge.connect()      # -> platform synapse, credential notebookutils

What a Synapse driver has, and the double gives it: ``AZURE_SERVICE=Microsoft.ProjectArcadia``
(and ``MMLSPARK_PLATFORM_INFO=synapse``); Spark conf ``spark.cluster.type=synapse`` plus
``spark.synapse.workspace.name`` / ``spark.synapse.pool.name``; an importable ``notebookutils``
(``pythonpath/``); the JVM ``TokenLibrary`` under ``sparkContext._jvm``. Fabric flavour instead:
the trident context file (at a path of the double's), ``MSNOTEBOOKUTILS_*`` env and
``spark.hadoop.trident.*`` conf. A batch driver (Livy batch / Spark job definition) also gets the
``spark.yarn.appMasterEnv.*`` entries of its conf as environment, as YARN gives them to the
application master, and its conf through ``PYSPARK_SUBMIT_ARGS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.synapse.utils import STATE_ENV, TokenLibrary

# The bridge's override of the trident context file's path (a contract with platforms/synapse,
# spelled out here so the double never imports the code it tests).
TRIDENT_CONTEXT_ENV = "_SPARK_AML_BRIDGE_TRIDENT_CONTEXT"

PYTHONPATH_DIR = Path(__file__).resolve().parent / "pythonpath"
TOKEN_LIBRARY_PATH = "com.microsoft.azure.synapse.tokenlibrary.TokenLibrary"
APP_MASTER_ENV = "spark.yarn.appMasterEnv."


class _JvmView:
    """``sparkContext._jvm`` with the TokenLibrary class added; everything else is the real JVM."""

    def __init__(self, real: Any, path: str = "") -> None:
        self._real = real
        self._path = path

    def __getattr__(self, name: str) -> Any:
        path = f"{self._path}.{name}" if self._path else name
        if path == TOKEN_LIBRARY_PATH:
            return TokenLibrary
        real = getattr(self._real, name)
        if TOKEN_LIBRARY_PATH.startswith(path + "."):
            return _JvmView(real, path)
        return real


@dataclass
class SynapseRuntime:
    """One emulated Synapse (or Fabric) runtime: its identity, workspace, pool and vaults."""

    emulator_info: Mapping[str, Any]
    state_dir: Path
    flavour: str = "synapse"  # or "fabric"
    session: str = "notebook"  # notebook | pipeline | batch
    # Whose tokens getToken returns: the emulator's managed identity (the workspace managed
    # identity of pipelines and jobs) or its service principal (standing in for a user).
    identity: str = "managed-identity"
    workspace_name: str = "syn-local"
    pool_name: str = "pool1"
    user_name: str = "alice@contoso.example"
    job_id: str = "7"
    notebook_name: str = "train"
    vaults: dict[str, dict[str, str]] = field(default_factory=dict)  # vault -> {secret: value}
    linked_services: dict[str, str] = field(default_factory=dict)  # linked service -> vault
    vault_readers: dict[str, list[str]] = field(default_factory=dict)  # vault -> workspace/user
    arm_audience: bool = False  # Fabric only: whether getToken accepts AzureManagement (VERIFY)
    notebook_utils: bool = True  # False: only the JVM token library (a job's Python driver)
    _saved_env: dict[str, str | None] = field(default_factory=dict, repr=False)
    _saved_conf: dict[str, str | None] = field(default_factory=dict, repr=False)
    _spark_context: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.flavour not in ("synapse", "fabric"):
            raise ValueError("flavour must be 'synapse' or 'fabric'")

    # -- what a driver has ------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / "synapse-runtime.json"

    @property
    def trident_file(self) -> Path:
        return self.state_dir / "trident-context"

    def write_state(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        info = self.emulator_info
        state = {
            "flavour": self.flavour,
            "session": self.session,
            "identity": self.identity,
            "workspace_name": self.workspace_name,
            "workspace_id": "00000000-0000-0000-0000-00000000fab1",
            "pool_name": self.pool_name,
            "user_name": self.user_name,
            "user_id": "00000000-0000-0000-0000-0000000a11ce",
            "job_id": self.job_id,
            "cluster_id": f"{self.pool_name}-cluster",
            "notebook_name": self.notebook_name,
            "vaults": self.vaults,
            "linked_services": self.linked_services,
            "vault_readers": self.vault_readers,
            "arm_audience": self.arm_audience,
            "emulator": {
                key: info[key]
                for key in (
                    "authority",
                    "tenant_id",
                    "client_id",
                    "client_secret",
                    "managed_identity_endpoint",
                    "managed_identity_header",
                    "ca_bundle",
                )
            },
        }
        descriptor = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        if self.flavour == "fabric":
            self.trident_file.write_text(
                "trident.workspace.id=00000000-0000-0000-0000-00000000fab1\n"
                "trident.artifact.type=SynapseNotebook\n"
                "trident.lakehouse.id=00000000-0000-0000-0000-0000000001ae\n",
                encoding="utf-8",
            )
        return self.state_file

    def env(self) -> dict[str, str]:
        """Environment variables a driver of this runtime has."""
        env = {
            "AZURE_SERVICE": "Microsoft.ProjectArcadia",
            STATE_ENV: str(self.state_file),
            # Keeps the real trident file (if any) out of a Synapse test; Fabric's points to ours.
            TRIDENT_CONTEXT_ENV: str(self.trident_file),
        }
        if self.flavour == "synapse":
            env["MMLSPARK_PLATFORM_INFO"] = "synapse"
        else:
            env["MSNOTEBOOKUTILS_RUNTIME_TYPE"] = "spark"
        return env

    def spark_conf(self) -> dict[str, str]:
        """Spark conf a session of this runtime has."""
        if self.flavour == "fabric":
            return {
                "spark.cluster.type": "trident",
                "spark.hadoop.trident.workspace.id": "00000000-0000-0000-0000-00000000fab1",
            }
        return {
            "spark.cluster.type": "synapse",
            "spark.synapse.workspace.name": self.workspace_name,
            "spark.synapse.pool.name": self.pool_name,
        }

    def pythonpath(self, existing: str | None = None) -> str:
        parts = [str(PYTHONPATH_DIR)] if self.notebook_utils else []
        if existing:
            parts.append(existing)
        return os.pathsep.join(parts)

    # -- in this process --------------------------------------------------------------------------

    def activate(self, spark: Any = None) -> SynapseRuntime:
        """Make this process look like this runtime's driver (undo with deactivate())."""
        self.write_state()
        for key, value in self.env().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self._forget_modules()
        if self.notebook_utils and str(PYTHONPATH_DIR) not in sys.path:
            sys.path.insert(0, str(PYTHONPATH_DIR))
        if spark is not None:
            for key, value in self.spark_conf().items():
                self._saved_conf.setdefault(key, spark.conf.get(key, None))
                spark.conf.set(key, value)
            self._spark_context = spark.sparkContext
            if self.flavour == "synapse":
                install_token_library(self._spark_context)
            self._spark = spark
        return self

    def deactivate(self) -> None:
        spark = getattr(self, "_spark", None)
        if spark is not None:
            for key, value in self._saved_conf.items():
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)
            self._saved_conf.clear()
            self._spark = None
        if self._spark_context is not None:
            uninstall_token_library(self._spark_context)
            self._spark_context = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        with contextlib.suppress(ValueError):
            sys.path.remove(str(PYTHONPATH_DIR))
        self._forget_modules()

    @contextlib.contextmanager
    def activated(self, spark: Any = None) -> Iterator[SynapseRuntime]:
        self.activate(spark)
        try:
            yield self
        finally:
            self.deactivate()

    @staticmethod
    def _forget_modules() -> None:
        for name in list(sys.modules):
            if name == "notebookutils" or name.startswith("notebookutils."):
                del sys.modules[name]

    # -- another process as this runtime's driver ------------------------------------------------

    def driver_env(
        self,
        conf: Mapping[str, str] | None = None,
        base: Mapping[str, str] | None = None,
        master: str = "local[1]",
    ) -> dict[str, str]:
        """Environment of a Python driver process of this runtime started with Spark `conf`.

        As YARN does for the application master, ``spark.yarn.appMasterEnv.X`` becomes env X;
        the whole conf (plus the runtime's own) reaches the session the script creates through
        ``PYSPARK_SUBMIT_ARGS``. No Azure credential variables are passed: a Synapse driver has
        only its runtime's identity.
        """
        self.write_state()
        env = {
            k: v
            for k, v in (os.environ if base is None else base).items()
            if not k.startswith(("AZURE_", "SPARK_AML_BRIDGE_", "_SPARK_AML_BRIDGE_", "MLFLOW_"))
            and k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT")
        }
        for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
            env[name] = "true"
        env.update(self.env())
        env["PYTHONPATH"] = self.pythonpath(env.get("PYTHONPATH"))
        env["PYSPARK_PYTHON"] = sys.executable
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        full_conf = {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            **self.spark_conf(),
            **dict(conf or {}),
        }
        for key, value in full_conf.items():
            if key.startswith(APP_MASTER_ENV):
                env[key[len(APP_MASTER_ENV) :]] = value
        args = ["--master", master]
        for key, value in full_conf.items():
            args += ["--conf", f"{key}={value}"]
        env["PYSPARK_SUBMIT_ARGS"] = " ".join(shlex.quote(a) for a in args) + " pyspark-shell"
        return env


def install_token_library(spark_context: Any) -> None:
    """Make ``spark_context._jvm.com.microsoft.azure.synapse.tokenlibrary.TokenLibrary`` answer."""
    real = spark_context._jvm
    if isinstance(real, _JvmView):
        return
    spark_context._jvm = _JvmView(real)


def uninstall_token_library(spark_context: Any) -> None:
    if isinstance(spark_context.__dict__.get("_jvm"), _JvmView):
        del spark_context.__dict__["_jvm"]
