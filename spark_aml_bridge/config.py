"""Every bridge setting, declared once: name, env var, Spark conf key, default, sensitivity.

Resolution order: explicit arguments > ``SPARK_AML_BRIDGE_*`` env > ``spark.aml.bridge.*`` conf of
an already active Spark session > platform defaults. Env, Spark conf, init scripts and job
payloads are all produced from this one table, so they can never disagree; sensitive settings are
never read from nor written to Spark conf (it is shown in the Spark UI).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spark_aml_bridge.errors import ConfigError

ENV_PREFIX = "SPARK_AML_BRIDGE_"
CONF_PREFIX = "spark.aml.bridge."


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_seconds(raw: str) -> float:
    return _check_number(float(raw))


def _check_number(value: float) -> float:
    # float() accepts "nan" and "inf": a nan margin would fetch a token for every request.
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    return value


# No setting is anywhere near this long; a longer value is a mistake, reported without echoing it.
MAX_SETTING_LENGTH = 4096


_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/?#]*)@")


def _refuse_credentials_in_uri(setting: Setting, raw: str, source: str) -> None:
    """user:password in a URI would travel to Spark conf, executor env and init scripts."""
    match = _USERINFO.match(raw.strip())
    if match is None:
        return
    scheme = raw.strip().split("://", 1)[0]
    shown = f"{scheme}://<redacted>@{raw.strip()[match.end() :].split('/', 1)[0]}/…"
    raise ConfigError(
        f"setting '{setting.name}' from {source} carries credentials in its URI ({shown}); "
        "settings are copied to Spark conf, executor environments and init scripts, so they "
        "never hold a secret",
        "remove the user/password from the URI and give them where the client reads secrets, "
        "e.g. MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
        "filled from the platform's secret store",
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class Setting:
    """One setting of the bridge."""

    name: str
    doc: str
    default: Any = None
    sensitive: bool = False
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    # Whether Spark executors need it (shipped to Python workers by spark.py).
    for_executors: bool = True

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def conf_key(self) -> str:
        return CONF_PREFIX + _camel(self.name)

    def convert(self, raw: Any, source: str) -> Any:
        if raw is None:
            return raw
        if not isinstance(raw, str):
            if self.parse is _parse_seconds and isinstance(raw, (int, float)):
                return self._parsed(lambda: _check_number(float(raw)), source)
            return raw
        if len(raw) > MAX_SETTING_LENGTH:
            raise ConfigError(
                f"setting '{self.name}' from {source} is {len(raw):,} characters long; no valid "
                f"value is longer than {MAX_SETTING_LENGTH:,}",
                f"set {self.env} (or {self.name}=) to {self.doc}",
            )
        _refuse_credentials_in_uri(self, raw, source)
        value = self._parsed(lambda: self.parse(raw), source)
        if self.choices and value not in self.choices:
            shown = "<redacted>" if self.sensitive else repr(value)
            raise ConfigError(
                f"setting '{self.name}' from {source} is {shown}; it must be one of "
                + ", ".join(self.choices),
                f"set {self.env} (or {self.name}=) to one of: {', '.join(self.choices)}",
            )
        return value

    def _parsed(self, parse: Callable[[], Any], source: str) -> Any:
        try:
            return parse()
        except ValueError as exc:
            raise ConfigError(
                f"setting '{self.name}' from {source} is invalid: {exc}",
                f"set {self.env} (or {self.name}=) to {self.doc}",
            ) from None


SETTINGS: tuple[Setting, ...] = (
    Setting("workspace", "the workspace ARM id, or its azureml:// or https:// tracking URI"),
    Setting("subscription_id", "the workspace's Azure subscription id (a GUID)"),
    Setting("resource_group", "the workspace's resource group name"),
    Setting("workspace_name", "the workspace name"),
    Setting("region", "the workspace region, e.g. westeurope (builds the host without ARM)"),
    Setting("cloud", "the Azure cloud name", default="AzureCloud"),
    Setting(
        "credential",
        "a credential spec: auto, env, service-principal[:<tenant>/<client-id>], "
        "managed-identity[:<client-id>], azure-cli, device-code",
        default="auto",
    ),
    Setting("tenant_id", "the Azure AD tenant id for a service principal"),
    Setting("client_id", "the service principal's (or user-assigned identity's) client id"),
    Setting(
        "client_secret",
        "the service principal's secret (env var or argument only, never Spark conf)",
        sensitive=True,
        for_executors=False,
    ),
    Setting("client_certificate_path", "a PEM/PFX certificate file for the service principal"),
    # Synapse/Fabric: where the service principal's secret lives. Names only, never the value.
    Setting(
        "key_vault",
        "the Key Vault (name, or https://<name>.vault.azure.net/ URL) holding the service "
        "principal's secret, read with the notebook utilities' getSecret (Synapse/Fabric)",
        for_executors=False,
    ),
    Setting(
        "key_vault_linked_service",
        "the Synapse linked service to that Key Vault (read with the workspace managed identity "
        "through getSecretWithLS)",
        for_executors=False,
    ),
    Setting(
        "client_secret_name",
        "the name of the Key Vault secret holding the service principal's client secret",
        for_executors=False,
    ),
    # Databricks: where the service principal's secret lives. Names only, never the value.
    Setting(
        "databricks_secret_scope",
        "the Databricks secret scope holding the service principal's client secret (read on the "
        "driver with dbutils.secrets.get)",
        for_executors=False,
    ),
    Setting(
        "databricks_secret_key",
        "the key, in that secret scope, of the service principal's client secret",
        default="azure-client-secret",
        for_executors=False,
    ),
    Setting(
        "databricks_tenant_id_key",
        "optional key, in that secret scope, holding the tenant id (else tenant_id / "
        "AZURE_TENANT_ID)",
        for_executors=False,
    ),
    Setting(
        "databricks_client_id_key",
        "optional key, in that secret scope, holding the client id (else client_id / "
        "AZURE_CLIENT_ID)",
        for_executors=False,
    ),
    Setting(
        "databricks_service_credential",
        "the name of a Unity Catalog service credential (an access connector's managed identity) "
        "to get workspace tokens with, on the driver and in Spark executors",
    ),
    Setting("authority", "the Azure AD authority host (default: the cloud's)"),
    Setting("arm_endpoint", "the Azure Resource Manager endpoint (default: the cloud's)"),
    Setting("ca_bundle", "a CA bundle file trusted for the workspace, ARM and the authority"),
    Setting(
        "trusted_hosts",
        "comma-separated hosts (host[:port]) that may receive the workspace's bearer token when "
        "an azureml:// URI names them, besides connected and configured workspaces and the "
        "cloud's Azure ML API hosts",
    ),
    Setting(
        "mode",
        "the tracking mode: workspace (track to the workspace), or dual (track to a primary and "
        "mirror every write to a second tracking server; see the dual_* settings)",
        default="workspace",
        choices=("workspace", "dual"),
    ),
    # Dual tracking (mode=dual).
    Setting(
        "dual_primary",
        "dual mode: the side reads come from and whose ids code sees: native (the platform's own "
        "MLflow tracking), workspace, or any MLflow tracking URI",
        default="native",
    ),
    Setting(
        "dual_mirror",
        "dual mode: the side every write is copied to: workspace, native, or any MLflow tracking "
        "URI",
        default="workspace",
    ),
    Setting(
        "dual_spool_dir",
        "dual mode and durable writes: local directory of the durable spool (default: the "
        "platform's local disk, else ~/.cache/spark-aml-bridge/spool)",
    ),
    Setting(
        "dual_strict",
        "dual mode: true to write the mirror synchronously and raise when it fails",
        default=False,
        parse=_parse_bool,
    ),
    Setting(
        "dual_experiment_names",
        "dual mode: mirror experiment names: auto (/Users/a/b/exp -> exp), basename, identity, "
        "prefix:<text>, or a JSON object of exact names",
        default="auto",
    ),
    Setting(
        "dual_mirror_registry",
        "dual mode: true to also register models (and their versions) in the mirror's registry",
        default=False,
        parse=_parse_bool,
    ),
    Setting(
        "dual_exit_flush_seconds",
        "dual mode: how long process exit waits for the mirror to catch up (the rest is replayed "
        "by the next connect() or `spark-aml-bridge mirror replay`)",
        default=10.0,
        parse=_parse_seconds,
    ),
    Setting(
        "dual_spool_max_mb",
        "dual mode: spool size (MB) above which metric batches are replaced by marks to "
        "reconcile their runs from the primary",
        default=1024.0,
        parse=_parse_seconds,
    ),
    # Durable writes in workspace mode (azureml/durable_store.py).
    Setting(
        "durable_writes",
        "workspace mode: true to commit params, metrics, tags, run ends and dataset inputs to a "
        "local durable spool and return at once (a background worker sends them; reads of a run "
        "first wait for its pending writes); false to send each write synchronously",
        default=False,
        parse=_parse_bool,
    ),
    Setting(
        "durable_read_wait_seconds",
        "durable writes: how long a read of a run (get_run, metric history, search) waits for "
        "that run's pending writes before it reads anyway",
        default=30.0,
        parse=_parse_seconds,
    ),
    Setting(
        "durable_exit_flush_seconds",
        "durable writes: how long process exit waits for pending writes (the rest is replayed "
        "by the next connect() or `spark-aml-bridge mirror replay`)",
        default=10.0,
        parse=_parse_seconds,
    ),
    Setting(
        "create_run_budget_seconds",
        "durable writes: how long creating a run (synchronous: code needs its id) keeps trying "
        "through throttling and outages, honouring Retry-After, before one clear error",
        default=120.0,
        parse=_parse_seconds,
    ),
    Setting(
        "executors",
        "true to carry the connection into Spark executors",
        default=True,
        parse=_parse_bool,
    ),
    Setting(
        "search_max_client_side_runs",
        "run searches Azure ML refuses (LIKE/ILIKE filters, ordering by metrics, params or tags) "
        "are evaluated on the client: the most runs such a search may fetch",
        default=50_000,
        parse=int,
    ),
    Setting(
        "token_refresh_margin",
        "seconds before expiry at which tokens are refreshed",
        default=300.0,
        parse=_parse_seconds,
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class ResolvedSetting:
    value: Any
    source: str


@dataclass
class BridgeConfig:
    """Resolved settings with where each came from; its repr never shows sensitive values."""

    values: dict[str, ResolvedSetting] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        resolved = self.values.get(name)
        return None if resolved is None else resolved.value

    def source(self, name: str) -> str | None:
        resolved = self.values.get(name)
        return None if resolved is None else resolved.source

    def __getattr__(self, name: str) -> Any:
        if name in SETTINGS_BY_NAME:
            return self.get(name)
        raise AttributeError(name)

    def replace(self, **overrides: Any) -> BridgeConfig:
        values = dict(self.values)
        for name, value in overrides.items():
            values[name] = ResolvedSetting(value, "override")
        return BridgeConfig(values)

    def to_env(self, *, for_executors: bool = False) -> dict[str, str]:
        """Non-sensitive settings as ``SPARK_AML_BRIDGE_*`` env entries."""
        env: dict[str, str] = {}
        for setting in SETTINGS:
            value = self.get(setting.name)
            if setting.sensitive or value is None or not isinstance(value, (str, bool, float, int)):
                continue
            if for_executors and not setting.for_executors:
                continue
            if value == setting.default and self.source(setting.name) == "default":
                continue
            env[setting.env] = _format(value)
        return env

    def to_spark_conf(self) -> dict[str, str]:
        """Non-sensitive settings as ``spark.aml.bridge.*`` conf entries."""
        return {
            SETTINGS_BY_NAME[k[len(ENV_PREFIX) :].lower()].conf_key: v
            for k, v in self.to_env().items()
        }

    def __repr__(self) -> str:
        shown = []
        for name, resolved in self.values.items():
            setting = SETTINGS_BY_NAME.get(name)
            value = "<redacted>" if setting and setting.sensitive else repr(resolved.value)
            if resolved.value is not None:
                shown.append(f"{name}={value} ({resolved.source})")
        return "BridgeConfig(" + ", ".join(shown) + ")"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def active_spark_conf() -> Mapping[str, str]:
    """``spark.aml.bridge.*`` entries of an already active Spark session; never starts Spark."""
    if "pyspark" not in sys.modules:
        return {}
    try:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is None:
            return {}
        return {
            key: value
            for key, value in session.sparkContext.getConf().getAll()
            if key.startswith(CONF_PREFIX)
        }
    except Exception:  # noqa: BLE001 - Spark Connect or a dying JVM: no conf to read
        return {}


def resolve_config(
    explicit: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    spark_conf: Mapping[str, str] | None = None,
    platform_defaults: Mapping[str, Any] | None = None,
) -> BridgeConfig:
    """Resolve every setting from its sources, highest precedence first."""
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    unknown = sorted(set(explicit) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ConfigError(
            f"unknown setting(s): {', '.join(unknown)}",
            "use one of: " + ", ".join(SETTINGS_BY_NAME),
        )
    env = os.environ if env is None else env
    spark_conf = active_spark_conf() if spark_conf is None else spark_conf
    _reject_unknown_conf(spark_conf)
    platform_defaults = platform_defaults or {}

    values: dict[str, ResolvedSetting] = {}
    for setting in SETTINGS:
        if setting.name in explicit:
            source, raw = "argument", explicit[setting.name]
        elif env.get(setting.env, "") != "":
            source, raw = f"env {setting.env}", env[setting.env]
        elif setting.conf_key in spark_conf:
            if setting.sensitive:
                raise ConfigError(
                    f"'{setting.conf_key}' is set in Spark conf, which the Spark UI shows to "
                    "anyone with access",
                    f"remove it and provide {setting.env} as an environment variable holding a "
                    "secret reference (e.g. {{secrets/<scope>/<key>}} on Databricks)",
                )
            source, raw = f"Spark conf {setting.conf_key}", spark_conf[setting.conf_key]
        elif setting.name in platform_defaults:
            source, raw = "platform default", platform_defaults[setting.name]
        else:
            source, raw = "default", setting.default
        values[setting.name] = ResolvedSetting(setting.convert(raw, source), source)
    return BridgeConfig(values)


def _reject_unknown_conf(spark_conf: Mapping[str, str]) -> None:
    known = {s.conf_key for s in SETTINGS}
    typos = sorted(k for k in spark_conf if k.startswith(CONF_PREFIX) and k not in known)
    if typos:
        raise ConfigError(
            f"unknown Spark conf key(s): {', '.join(typos)}",
            "use one of: " + ", ".join(sorted(known)),
        )


def settings_table() -> Iterable[tuple[str, str, str, str, str]]:
    """(name, env var, Spark conf key, default, doc) rows, for docs and ``doctor``."""
    for s in SETTINGS:
        default = "" if s.default is None else _format(s.default)
        conf = "(never: sensitive)" if s.sensitive else s.conf_key
        yield s.name, s.env, conf, default, s.doc
