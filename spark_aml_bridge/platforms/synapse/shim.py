"""The Synapse shim (and what it shares with Fabric's): detection by the Arcadia signals
(``signals.py``), context from the notebook utilities and the active session's conf, tags."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spark_aml_bridge.platforms.base import PlatformContext, PlatformShim
from spark_aml_bridge.platforms.synapse.signals import (
    NOTEBOOK_ENV_FUNCTIONS,
    PLATFORM_CONTEXT_ENV,
    PLATFORM_HINT_ENV,
    SYNAPSE_CONF_KEYS,
    ArcadiaSignals,
    call_quietly,
    gather_signals,
    notebook_utils,
    relayed_details,
    session_kind,
)
from spark_aml_bridge.spark_state import active_session, session_conf

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.sources import CredentialSource


def tags_for(ctx: PlatformContext) -> dict[str, str]:
    """Run tags for a Synapse/Fabric context: platform, role, details, and the real user."""
    tags = {"spark_aml_bridge.platform": ctx.platform, "spark_aml_bridge.role": ctx.role}
    tags.update({f"spark_aml_bridge.{k}": v for k, v in ctx.details.items() if v})
    user = ctx.details.get("user")
    if user:
        # MLflow's default is the OS user (trusted-service-user on Synapse): name the person.
        tags["mlflow.user"] = user
    return tags


# --- the shim ---------------------------------------------------------------------------------


@dataclass(eq=False)
class ArcadiaShim(PlatformShim):
    """What Synapse and Fabric share: both set the Arcadia variable, so one classification of
    the same signals decides between them. `environ`/`conf`/`role` are for tests (default: the
    live process)."""

    environ: Mapping[str, str] | None = None
    conf: Mapping[str, str] | None = None
    role: str | None = None

    def signals(self) -> ArcadiaSignals:
        return gather_signals(self.environ, self.conf, self.role)

    def detect(self) -> bool:
        return self.signals().classify() == self.name


@dataclass(eq=False)
class SynapsePlatform(ArcadiaShim):
    """Synapse Spark pools."""

    name = "synapse"

    def context(self) -> PlatformContext:
        signals = self.signals()
        if signals.role == "executor":
            return PlatformContext(self.name, "executor", relayed_details(signals.environ))
        details: dict[str, str] = {}
        env = notebook_utils("env")
        for key, function in NOTEBOOK_ENV_FUNCTIONS.items():
            value = call_quietly(env, function) if env is not None else None
            if value:
                details[key] = value
        session = active_session() if signals.role == "driver" and self.conf is None else None
        conf = dict(self.conf or {})
        if session is not None:
            wanted = tuple(k for keys in SYNAPSE_CONF_KEYS.values() for k in keys)
            conf = session_conf(session, wanted)
            try:
                details.setdefault("spark_app_id", str(session.sparkContext.applicationId))
            except Exception:  # noqa: BLE001 - Spark Connect
                pass
        for key, conf_keys in SYNAPSE_CONF_KEYS.items():
            for conf_key in conf_keys:
                if key not in details and conf.get(conf_key):
                    details[key] = conf[conf_key]
        if "spark_app_id" not in details and conf.get("spark.app.id"):
            details["spark_app_id"] = conf["spark.app.id"]
        details["session"] = session_kind()
        ordered = ("synapse_workspace", "synapse_pool", "spark_app_id", "job_id", "user", "session")
        return PlatformContext(
            self.name, signals.role, {k: details[k] for k in ordered if details.get(k)}
        )

    def default_credential_chain(self) -> list[str]:
        # env: an explicit service principal always wins (the user put it there on purpose).
        # key-vault-sp: a service principal whose secret the pool names (configured => intended).
        # notebookutils, token-library: the runtime's own ARM token (the user interactively,
        #   the workspace managed identity in pipelines and jobs); driver only.
        # relayed-token: on executors, the token the driver handed over.
        return ["env", "key-vault-sp", "notebookutils", "token-library", "relayed-token"]

    def credential_sources(self) -> tuple[CredentialSource, ...]:
        from spark_aml_bridge.platforms.synapse.credentials import SOURCES

        return SOURCES

    def context_tags(self) -> dict[str, str]:
        return tags_for(self.context())

    def executor_env(self) -> dict[str, str]:
        details = self.context().details
        return {PLATFORM_HINT_ENV: self.name, PLATFORM_CONTEXT_ENV: json.dumps(details)}
