"""What a Synapse Spark pool needs so every notebook and job on it tracks to the workspace.

Generated from config.py's one settings table, so pool configuration, ``connect()`` and batch job
payloads can never disagree, and a sensitive setting can never appear (only Key Vault *names*).

Zero code works like this: MLflow builds its tracking store from ``MLFLOW_TRACKING_URI``; an
``azureml://`` URI makes it load this package's ``azureml`` store through MLflow's entry points,
which opens the workspace session from the ``spark.aml.bridge.*`` conf of the active session (the
driver) or the ``SPARK_AML_BRIDGE_*`` env (executors, which have no session conf). So the pool
configuration sets:

* ``spark.aml.bridge.<setting>``: the non-secret settings (the driver reads them; a notebook can
  override one with ``%%configure``);
* ``spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI`` and ``spark.executorEnv.MLFLOW_TRACKING_URI``:
  the trigger, on the driver (Synapse runs Livy on YARN, the driver is the application master —
  VERIFY on a live pool) and on executors;
* ``spark.executorEnv.SPARK_AML_BRIDGE_<SETTING>``: the settings executors need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_aml_bridge._version import __version__
from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

APP_MASTER_ENV = "spark.yarn.appMasterEnv."
EXECUTOR_ENV = "spark.executorEnv."
FORMATS = ("text", "conf", "json", "configure")
# Settings made redundant once the workspace is given as its tracking URI.
_ADDRESS_PARTS = ("subscription_id", "resource_group", "workspace_name", "region")


@dataclass(frozen=True)
class PoolConfiguration:
    """A pool's requirements lines and Spark configuration properties (no secret, ever)."""

    requirements: list[str]
    spark_conf: dict[str, str]
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    def render(self, fmt: str = "text") -> str:
        if fmt == "conf":  # the pool's "Apache Spark configuration" file: one property a line
            return "".join(f"{key} {value}\n" for key, value in self.spark_conf.items())
        if fmt == "json":
            payload = {"requirements": self.requirements, "conf": self.spark_conf}
            return json.dumps(payload, indent=2) + "\n"
        if fmt == "configure":  # one session only: the notebook's first cell
            return "%%configure -f\n" + json.dumps({"conf": self.spark_conf}, indent=2) + "\n"
        if fmt != "text":
            raise ConfigError(f"unknown format {fmt!r}", "use one of: " + ", ".join(FORMATS))
        lines = [
            "# Synapse Spark pool configuration for spark-aml-bridge",
            f"# workspace: {self.tracking_uri}",
            "",
            "## requirements.txt (Manage > Apache Spark pools > Packages)",
            *self.requirements,
            "",
            "## Apache Spark configuration (Manage > Apache Spark configurations), one per line",
            *(f"{key} {value}" for key, value in self.spark_conf.items()),
        ]
        if self.notes:
            lines += ["", "## Notes", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def _tracking_uri(config: BridgeConfig) -> str:
    from spark_aml_bridge.workspace import address_from_settings

    return address_from_settings(config, need_host_for="the pool configuration").tracking_uri()


def _driver_only(spec: str) -> bool:
    from spark_aml_bridge.credentials.sources import parse_spec
    from spark_aml_bridge.platforms.synapse.credentials import DRIVER_ONLY_SOURCES

    return parse_spec(spec)[0] in DRIVER_ONLY_SOURCES


def synapse_pool_configuration(
    config: BridgeConfig, *, package: str | None = None
) -> PoolConfiguration:
    """The pool configuration for `config` (resolved settings; sensitive ones are refused)."""
    from spark_aml_bridge.config import SETTINGS
    from spark_aml_bridge.platforms.synapse.signals import PLATFORM_HINT_ENV

    for setting in SETTINGS:
        if setting.sensitive and getattr(config, setting.name) is not None:
            raise ConfigError(
                f"'{setting.name}' is a secret and cannot go into a pool configuration (Spark "
                "conf is shown in the Spark UI)",
                "store it in Key Vault and set key_vault_linked_service (or key_vault) and "
                "client_secret_name instead",
            )
    uri = _tracking_uri(config)
    resolved = config.replace(workspace=uri, **dict.fromkeys(_ADDRESS_PARTS))
    conf: dict[str, str] = dict(resolved.to_spark_conf())
    conf[APP_MASTER_ENV + "MLFLOW_TRACKING_URI"] = uri
    conf[EXECUTOR_ENV + "MLFLOW_TRACKING_URI"] = uri
    for name, value in resolved.to_env(for_executors=True).items():
        if name == "SPARK_AML_BRIDGE_CREDENTIAL" and _driver_only(value):
            continue  # executors use their default chain: env SP, or the driver's relayed token
        conf[EXECUTOR_ENV + name] = value
    # Executors may lack the runtime's markers (VERIFY AZURE_SERVICE there): name the platform.
    conf[EXECUTOR_ENV + PLATFORM_HINT_ENV] = "synapse"
    requirement = package or f"spark-aml-bridge=={__version__}"
    notes = [
        "No secret is in this configuration; a service principal's secret is read at run time "
        "from Key Vault (key_vault_linked_service / key_vault + client_secret_name).",
        "MLflow itself comes from the runtime; if the runtime has none, add 'mlflow-skinny' to "
        "requirements.txt.",
        "Batch scripts: create the SparkSession before the first MLflow call, so the driver reads "
        "the spark.aml.bridge.* properties.",
        "Executors get the tracking URI and settings from the pool; their token comes from the "
        "driver after spark_aml_bridge.connect(), or from their own service principal env.",
    ]
    return PoolConfiguration([requirement], conf, uri, notes)


def spark_conf_for(config: BridgeConfig) -> dict[str, str]:
    """Just the Spark conf entries (what a batch job carries)."""
    return synapse_pool_configuration(config).spark_conf


def config_from_settings(settings: Mapping[str, Any] | None = None) -> BridgeConfig:
    """Resolve settings given by name (plus SPARK_AML_BRIDGE_* env), never from a Spark session."""
    from spark_aml_bridge.config import resolve_config

    return resolve_config(dict(settings or {}), spark_conf={})
