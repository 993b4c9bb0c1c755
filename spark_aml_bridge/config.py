"""Every bridge setting, declared once and typed: name, type, env var, Spark conf key, default, doc.

Each setting is a typed descriptor on ``BridgeConfig`` (the pattern of databricks-sdk's
``ConfigAttribute``): ``config.mode`` is a ``str``, ``config.dual_spool_max_mb`` a ``float``,
``config.region`` a ``str | None``, so a type checker flags misuse. Reading the attribute is the one
way code reads a setting; loops over the table (``SETTINGS``) use ``getattr(config, setting.name)``.

Resolution order: explicit arguments > ``SPARK_AML_BRIDGE_*`` env > ``spark.aml.bridge.*`` conf of
an already active Spark session > platform defaults. Env, Spark conf, init scripts and job
payloads are all produced from this one table, so they can never disagree; sensitive settings are
never read from nor written to Spark conf (it is shown in the Spark UI).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

ENV_PREFIX = "SPARK_AML_BRIDGE_"
CONF_PREFIX = "spark.aml.bridge."


T = TypeVar("T")


def parse_bool(raw: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_seconds(raw: str) -> float:
    """A finite, non-negative number (seconds, megabytes)."""
    return _check_number(float(raw))


def _check_number(value: float) -> float:
    # float() accepts "nan" and "inf": a nan margin would fetch a token for every request.
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    return value


def parse_credential(raw: str) -> str | TokenCredential:
    """A credential spec; ``connect(credential=...)`` may also pass a TokenCredential object."""
    return raw


# No setting is anywhere near this long; a longer value is a mistake, reported without echoing it.
MAX_SETTING_LENGTH = 4096


_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/?#]*)@")


def _refuse_credentials_in_uri(setting: Setting[Any], raw: str, source: str) -> None:
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


class Setting(Generic[T]):
    """One setting of the bridge, declared as a typed attribute of ``BridgeConfig``.

    ``parse`` turns the text of an env var or Spark conf entry into the setting's type ``T``; a
    setting without a default reads as ``T | None``.
    """

    name: str

    @overload
    def __init__(
        self: Setting[T],
        parse: Callable[[str], T],
        doc: str,
        *,
        default: T,
        sensitive: bool = False,
        choices: tuple[str, ...] = (),
        for_executors: bool = True,
    ) -> None: ...

    @overload
    def __init__(
        self: Setting[T | None],
        parse: Callable[[str], T],
        doc: str,
        *,
        default: None = None,
        sensitive: bool = False,
        choices: tuple[str, ...] = (),
        for_executors: bool = True,
    ) -> None: ...

    def __init__(
        self,
        parse: Callable[[str], Any],
        doc: str,
        *,
        default: Any = None,
        sensitive: bool = False,
        choices: tuple[str, ...] = (),
        for_executors: bool = True,
    ) -> None:
        self.parse = parse
        self.doc = doc
        self.default = default
        self.sensitive = sensitive
        self.choices = choices
        # Whether Spark executors need it (shipped to Python workers by spark.py).
        self.for_executors = for_executors

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, config: None, owner: type | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, config: BridgeConfig, owner: type | None = None) -> T: ...

    def __get__(self, config: BridgeConfig | None, owner: type | None = None) -> Any:
        if config is None:
            return self
        resolved = config._values.get(self.name)
        return None if resolved is None else resolved.value

    def __set__(self, config: BridgeConfig, value: T) -> None:
        # Resolved settings are read-only: BridgeConfig.replace() makes a changed copy.
        raise AttributeError(f"setting '{self.name}' is read-only; use BridgeConfig.replace()")

    def __repr__(self) -> str:
        return f"<Setting {self.name}: {getattr(self.parse, '__name__', self.parse)}>"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def conf_key(self) -> str:
        return CONF_PREFIX + _camel(self.name)

    def convert(self, raw: Any, source: str) -> T | None:
        if raw is None:
            return raw
        if not isinstance(raw, str):
            if self.parse is parse_seconds and isinstance(raw, (int, float)):
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


@dataclass(frozen=True)
class ResolvedSetting:
    value: Any
    source: str


class BridgeConfig:
    """Resolved settings with where each came from; its repr never shows sensitive values."""

    def __init__(self, values: Mapping[str, ResolvedSetting] | None = None) -> None:
        self._values: dict[str, ResolvedSetting] = dict(values or {})

    workspace = Setting(
        str,
        "the workspace ARM id, or its azureml:// or https:// tracking URI",
    )
    subscription_id = Setting(
        str,
        "the workspace's Azure subscription id (a GUID)",
    )
    resource_group = Setting(
        str,
        "the workspace's resource group name",
    )
    workspace_name = Setting(
        str,
        "the workspace name",
    )
    region = Setting(
        str,
        "the workspace region, e.g. westeurope (builds the host without ARM)",
    )
    cloud = Setting(
        str,
        "the Azure cloud name",
        default="AzureCloud",
    )
    credential = Setting(
        parse_credential,
        "a credential spec: auto, env, service-principal[:<tenant>/<client-id>], "
        "managed-identity[:<client-id>], azure-cli, device-code",
        default="auto",
    )
    tenant_id = Setting(
        str,
        "the Azure AD tenant id for a service principal",
    )
    client_id = Setting(
        str,
        "the service principal's (or user-assigned identity's) client id",
    )
    client_secret = Setting(
        str,
        "the service principal's secret (env var or argument only, never Spark conf)",
        sensitive=True,
        for_executors=False,
    )
    client_certificate_path = Setting(
        str,
        "a PEM/PFX certificate file for the service principal",
    )
    # Synapse/Fabric: where the service principal's secret lives. Names only, never the value.
    key_vault = Setting(
        str,
        "the Key Vault (name, or https://<name>.vault.azure.net/ URL) holding the service "
        "principal's secret, read with the notebook utilities' getSecret (Synapse/Fabric)",
        for_executors=False,
    )
    key_vault_linked_service = Setting(
        str,
        "the Synapse linked service to that Key Vault (read with the workspace managed identity "
        "through getSecretWithLS)",
        for_executors=False,
    )
    client_secret_name = Setting(
        str,
        "the name of the Key Vault secret holding the service principal's client secret",
        for_executors=False,
    )
    # Databricks: where the service principal's secret lives. Names only, never the value.
    databricks_secret_scope = Setting(
        str,
        "the Databricks secret scope holding the service principal's client secret (read on the "
        "driver through the runtime's secrets utility)",
        for_executors=False,
    )
    databricks_secret_key = Setting(
        str,
        "the key, in that secret scope, of the service principal's client secret",
        default="azure-client-secret",
        for_executors=False,
    )
    databricks_tenant_id_key = Setting(
        str,
        "optional key, in that secret scope, holding the tenant id (else tenant_id / "
        "AZURE_TENANT_ID)",
        for_executors=False,
    )
    databricks_client_id_key = Setting(
        str,
        "optional key, in that secret scope, holding the client id (else client_id / "
        "AZURE_CLIENT_ID)",
        for_executors=False,
    )
    databricks_service_credential = Setting(
        str,
        "the name of a Unity Catalog service credential (an access connector's managed identity) "
        "to get workspace tokens with, on the driver and in Spark executors",
    )
    authority = Setting(
        str,
        "the Azure AD authority host (default: the cloud's)",
    )
    arm_endpoint = Setting(
        str,
        "the Azure Resource Manager endpoint (default: the cloud's)",
    )
    ca_bundle = Setting(
        str,
        "a CA bundle file trusted for the workspace, ARM and the authority",
    )
    trusted_hosts = Setting(
        str,
        "comma-separated hosts (host[:port]) that may receive the workspace's bearer token when "
        "an azureml:// URI names them, besides connected and configured workspaces and the "
        "cloud's Azure ML API hosts",
    )
    mode = Setting(
        str,
        "the tracking mode: workspace (track to the workspace), or dual (track to a primary and "
        "mirror every write to a second tracking server; see the dual_* settings)",
        default="workspace",
        choices=("workspace", "dual"),
    )
    # Dual tracking (mode=dual).
    dual_primary = Setting(
        str,
        "dual mode: the side reads come from and whose ids code sees: native (the platform's own "
        "MLflow tracking), workspace, or any MLflow tracking URI",
        default="native",
    )
    dual_mirror = Setting(
        str,
        "dual mode: the side every write is copied to: workspace, native, or any MLflow tracking "
        "URI",
        default="workspace",
    )
    dual_spool_dir = Setting(
        str,
        "dual mode and durable writes: local directory of the durable spool (default: the "
        "platform's local disk, else ~/.cache/spark-aml-bridge/spool)",
    )
    dual_strict = Setting(
        parse_bool,
        "dual mode: true to write the mirror synchronously and raise when it fails",
        default=False,
    )
    dual_experiment_names = Setting(
        str,
        "dual mode: mirror experiment names: auto (/Users/a/b/exp -> exp), basename, identity, "
        "prefix:<text>, or a JSON object of exact names",
        default="auto",
    )
    dual_mirror_registry = Setting(
        parse_bool,
        "dual mode: true to also register models (and their versions) in the mirror's registry",
        default=False,
    )
    dual_exit_flush_seconds = Setting(
        parse_seconds,
        "dual mode: how long process exit waits for the mirror to catch up (the rest is replayed "
        "by the next connect() or `spark-aml-bridge mirror replay`)",
        default=10.0,
    )
    dual_spool_max_mb = Setting(
        parse_seconds,
        "dual mode: spool size (MB) above which metric batches are replaced by marks to "
        "reconcile their runs from the primary",
        default=1024.0,
    )
    # Durable writes in workspace mode (azureml/durable_store.py).
    durable_writes = Setting(
        parse_bool,
        "workspace mode: true to commit params, metrics, tags, run ends and dataset inputs to a "
        "local durable spool and return at once (a background worker sends them; reads of a run "
        "first wait for its pending writes); false to send each write synchronously",
        default=False,
    )
    durable_read_wait_seconds = Setting(
        parse_seconds,
        "durable writes: how long a read of a run (get_run, metric history, search) waits for "
        "that run's pending writes before it reads anyway",
        default=30.0,
    )
    durable_exit_flush_seconds = Setting(
        parse_seconds,
        "durable writes: how long process exit waits for pending writes (the rest is replayed "
        "by the next connect() or `spark-aml-bridge mirror replay`)",
        default=10.0,
    )
    create_run_budget_seconds = Setting(
        parse_seconds,
        "durable writes: how long creating a run (synchronous: code needs its id) keeps trying "
        "through throttling and outages, honouring Retry-After, before one clear error",
        default=120.0,
    )
    executors = Setting(
        parse_bool,
        "true to carry the connection into Spark executors",
        default=True,
    )
    search_max_client_side_runs = Setting(
        int,
        "run searches Azure ML refuses (LIKE/ILIKE filters, ordering by metrics, params or tags) "
        "are evaluated on the client: the most runs such a search may fetch",
        default=50_000,
    )
    token_refresh_margin = Setting(
        parse_seconds,
        "seconds before expiry at which tokens are refreshed",
        default=300.0,
    )

    def source(self, name: str) -> str | None:
        """Where a setting's value came from ("argument", "env …", "default", …)."""
        resolved = self._values.get(name)
        return None if resolved is None else resolved.source

    def identity(self) -> tuple[tuple[str, str], ...]:
        """Every setting's name and value repr: equal for configs that would connect alike."""
        return tuple(sorted((name, repr(r.value)) for name, r in self._values.items()))

    def replace(self, **overrides: Any) -> BridgeConfig:
        """A copy with some settings overridden (names checked, values taken as given)."""
        unknown = sorted(set(overrides) - set(SETTINGS_BY_NAME))
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        values = dict(self._values)
        for name, value in overrides.items():
            values[name] = ResolvedSetting(value, "override")
        return BridgeConfig(values)

    def to_env(self, *, for_executors: bool = False) -> dict[str, str]:
        """Non-sensitive settings as ``SPARK_AML_BRIDGE_*`` env entries."""
        env: dict[str, str] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
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
        for name, resolved in self._values.items():
            setting = SETTINGS_BY_NAME.get(name)
            value = "<redacted>" if setting and setting.sensitive else repr(resolved.value)
            if resolved.value is not None:
                shown.append(f"{name}={value} ({resolved.source})")
        return "BridgeConfig(" + ", ".join(shown) + ")"


SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in vars(BridgeConfig).values() if isinstance(value, Setting)
)
SETTINGS_BY_NAME: dict[str, Setting[Any]] = {s.name: s for s in SETTINGS}


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def active_spark_conf() -> Mapping[str, str]:
    """``spark.aml.bridge.*`` entries of an already active Spark session; never starts Spark."""
    from spark_aml_bridge.spark_state import active_conf_with_prefix

    return active_conf_with_prefix(CONF_PREFIX)


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
