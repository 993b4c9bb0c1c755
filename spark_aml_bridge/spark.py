"""Carry the connection into Spark Python workers (executors).

Workers are started by the executor JVM, so the driver's ``mlflow.set_tracking_uri`` never
reaches them. We add entries to ``SparkContext.environment``: they reach the Python workers of
UDFs, ``mapInPandas`` and RDD functions created afterwards, and unlike Spark conf they are not
shown in the Spark UI. No secret and no token goes there (py4j logs that environment at DEBUG):
workers get a handle to the driver's service (``driver_service.py``), whose key travels as a
Spark file, and ask it for fresh tokens when theirs near expiry — unless the driver's credential
can be rebuilt on executors without a secret (their own identity), which they then use.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.credentials.generic import RELAYED_TOKEN_ENV
from spark_aml_bridge.driver_service import DRIVER_HANDLE_ENV

if TYPE_CHECKING:
    from spark_aml_bridge.driver_service import DriverService
    from spark_aml_bridge.session import WorkspaceSession

_log = logging.getLogger(__name__)


def executor_environment(session: WorkspaceSession) -> dict[str, str]:
    """What a Python worker needs to track to `session`'s workspace (no secrets, no tokens)."""
    env = session.config.to_env(for_executors=True)
    # The resolved URI: workers never need ARM, and use the same host the driver verified.
    env["SPARK_AML_BRIDGE_WORKSPACE"] = session.tracking_uri
    env["MLFLOW_TRACKING_URI"] = session.tracking_uri
    if session.ca_bundle:
        env["SPARK_AML_BRIDGE_CA_BUNDLE"] = session.ca_bundle
    env["SPARK_AML_BRIDGE_AUTHORITY"] = session.authority
    for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        if name in os.environ:
            env[name] = os.environ[name]
    if not session.credential.executor_reusable:
        # The driver's identity, through its service: not whatever else the worker might find.
        env["SPARK_AML_BRIDGE_CREDENTIAL"] = "relayed-token"
    env.update(session.platform.executor_env())
    return env


def _service_address(spark_context: Any) -> tuple[str, str]:
    """(bind address, address executors use) for the driver service."""
    conf = spark_context.getConf()
    if str(conf.get("spark.master", "")).startswith("local"):
        # local[N] and local-cluster[...]: every executor runs on this machine.
        return "127.0.0.1", "127.0.0.1"
    import socket

    host = conf.get("spark.driver.host", None) or socket.gethostname()
    return conf.get("spark.driver.bindAddress", None) or host, host


class ExecutorLink:
    """The entries this bridge put into a SparkContext's environment, and the driver service
    executors ask for tokens and the active run; all undone by ``undo()``."""

    def __init__(self, spark_context: Any, session: WorkspaceSession) -> None:
        self._sc = spark_context
        self._session = session
        self._previous: dict[str, str | None] = {}
        self.service: DriverService | None = None
        self._key_dir: str | None = None

    def apply(self) -> None:
        from spark_aml_bridge.driver_service import DriverService

        env = executor_environment(self._session)
        relay = not self._session.credential.executor_reusable
        bind, advertise = _service_address(self._sc)
        self.service = DriverService(
            self._session.tokens if relay else None, bind=bind, advertise=advertise
        )
        env[DRIVER_HANDLE_ENV] = self.service.handle(self._ship_key(self.service))
        # A token an older version of this bridge relayed must not linger in the environment.
        self._previous.setdefault(RELAYED_TOKEN_ENV, self._sc.environment.get(RELAYED_TOKEN_ENV))
        self._sc.environment.pop(RELAYED_TOKEN_ENV, None)
        for key, value in env.items():
            self._previous.setdefault(key, self._sc.environment.get(key))
            self._sc.environment[key] = value

    def _ship_key(self, service: DriverService) -> str:
        """Write the service's key to a private file and hand it to Spark; returns its name."""
        self._key_dir = tempfile.mkdtemp(prefix="spark-aml-bridge-")
        atexit.register(shutil.rmtree, self._key_dir, True)
        name = f"spark-aml-bridge-{secrets.token_hex(8)}.key"
        path = os.path.join(self._key_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(service.key_material())
        self._sc.addFile(path)
        return name

    def stats(self) -> dict[str, Any]:
        """What executors asked the driver for (token requests in total and per process)."""
        return self.service.stats() if self.service is not None else {}

    def undo(self) -> None:
        if self.service is not None:
            self.service.stop()
        # The key file stays while the SparkContext lives: Spark hands every added file to each
        # executor it starts, and fails tasks whose file vanished. With the service stopped, its
        # secret opens nothing; the private directory goes at process exit.
        for key, value in self._previous.items():
            if value is None:
                self._sc.environment.pop(key, None)
            else:
                self._sc.environment[key] = value
        self._previous.clear()


def link_executors(session: WorkspaceSession) -> ExecutorLink | None:
    """Link the active Spark session's executors to `session`; None when there is none."""
    from spark_aml_bridge.spark_state import active_spark_context

    spark_context = active_spark_context()
    if spark_context is None:
        return None
    link = ExecutorLink(spark_context, session)
    link.apply()
    return link
