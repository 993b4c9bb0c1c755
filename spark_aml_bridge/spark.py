"""Carry the connection into Spark Python workers (executors).

Workers are started by the executor JVM, so the driver's ``mlflow.set_tracking_uri`` never
reaches them. We add entries to ``SparkContext.environment``: they reach the Python workers of
UDFs, ``mapInPandas`` and RDD functions created afterwards, and unlike Spark conf they are not
shown in the Spark UI. Secrets are never shipped: when the driver's credential cannot be rebuilt
on a worker without one, the worker gets a short-lived access token (refreshed on the driver
before it expires) and the worker's own default chain as fallback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.credentials.generic import RELAYED_TOKEN_ENV

if TYPE_CHECKING:
    from spark_aml_bridge.session import WorkspaceSession

_log = logging.getLogger(__name__)


def executor_environment(session: WorkspaceSession) -> dict[str, str]:
    """What a Python worker needs to track to `session`'s workspace (no secrets)."""
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
        env["SPARK_AML_BRIDGE_CREDENTIAL"] = "auto"
        env[RELAYED_TOKEN_ENV] = _relayed(session)
    env.update(session.platform.executor_env())
    return env


def _relayed(session: WorkspaceSession) -> str:
    token = session.tokens.access_token()
    return json.dumps({"token": token.token, "expires_on": int(token.expires_on)})


class ExecutorLink:
    """The entries this bridge put into a SparkContext's environment, kept fresh until undone."""

    def __init__(self, spark_context: Any, session: WorkspaceSession) -> None:
        self._sc = spark_context
        self._session = session
        self._previous: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def apply(self) -> None:
        env = executor_environment(self._session)
        for key, value in env.items():
            self._previous.setdefault(key, self._sc.environment.get(key))
            self._sc.environment[key] = value
        if RELAYED_TOKEN_ENV in env:
            self._session.tokens.on_refresh(self._on_refresh)
            self._thread = threading.Thread(
                target=self._keep_fresh, name="spark-aml-bridge-executor-token", daemon=True
            )
            self._thread.start()

    def _on_refresh(self, token: Any) -> None:
        self._sc.environment[RELAYED_TOKEN_ENV] = json.dumps(
            {"token": token.token, "expires_on": int(token.expires_on)}
        )

    def _keep_fresh(self) -> None:
        # The driver may sit idle while executors work: refresh on a timer, not only on use.
        tokens = self._session.tokens
        while not self._stop.is_set():
            try:
                tokens.token()
                wait = max(1.0, min(60.0, tokens.seconds_until_refresh()))
            except Exception:  # noqa: BLE001 - keep trying; the error is logged, not raised
                _log.warning("could not refresh the token handed to executors", exc_info=True)
                wait = 30.0
            self._stop.wait(wait)

    def undo(self) -> None:
        self._stop.set()
        self._session.tokens.on_refresh(None)
        for key, value in self._previous.items():
            if value is None:
                self._sc.environment.pop(key, None)
            else:
                self._sc.environment[key] = value
        self._previous.clear()


def link_executors(session: WorkspaceSession) -> ExecutorLink | None:
    """Link the active Spark session's executors to `session`; None when there is none."""
    if "pyspark" not in sys.modules:
        return None
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        spark_context = getattr(spark, "sparkContext", None) if spark is not None else None
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        spark_context = None
    if spark_context is None:
        return None
    link = ExecutorLink(spark_context, session)
    link.apply()
    return link
