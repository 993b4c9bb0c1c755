"""Cluster init scripts: what a Databricks cluster needs so every notebook and job on it tracks
to the workspace with no code. (Synapse pools: ``pool_config.py``.)

Zero code works like this: MLflow builds its tracking store from ``MLFLOW_TRACKING_URI``; an
``azureml://`` URI makes it load this package's ``azureml`` store through its entry points, which
opens the workspace session from the ``SPARK_AML_BRIDGE_*`` env. The init script runs on every node
before Spark starts; it

1. installs the package with the cluster's pip (``/databricks/python/bin/pip``) without changing
   what the runtime ships: every installed distribution is pinned through a pip constraints file,
   so pip only adds what is missing (and, if that has no solution, pins MLflow/PySpark at least);
2. appends ``export`` lines to ``/databricks/spark/conf/spark-env.sh``, which Databricks sources
   for the driver and every worker: ``MLFLOW_TRACKING_URI`` and the non-secret settings, generated
   from config.py's one table.

Secrets never go into the script. Databricks resolves ``{{secrets/<scope>/<key>}}`` references in
the cluster's own configuration only (Environment variables / ``spark_env_vars``), when the cluster
starts; a reference written by an init script would stay a literal. So the script names the
reference the cluster configuration must carry (and warns at start-up if it is missing), or the
credential reads the secret at run time (``databricks-secret-scope``: scope and key names only).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_aml_bridge._version import __version__
from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

CLUSTER_PIP = "/databricks/python/bin/pip"
CLUSTER_SPARK_ENV = "/databricks/spark/conf/spark-env.sh"
BLOCK_BEGIN = "# >>> spark-aml-bridge >>>"
BLOCK_END = "# <<< spark-aml-bridge <<<"
# Distributions the runtime's MLflow/Spark integration depends on: always pinned.
RUNTIME_PINS = (
    "mlflow",
    "mlflow-skinny",
    "mlflow-tracing",
    "pyspark",
    "py4j",
    "databricks-connect",
)
# Credential sources that take a service principal's secret from the environment.
_ENV_SECRET_SOURCES = ("databricks-env", "env")
# Settings made redundant once the workspace is given as its tracking URI.
_ADDRESS_PARTS = ("subscription_id", "resource_group", "workspace_name", "region")


@dataclass(frozen=True)
class DatabricksClusterEnv:
    """The environment a Databricks cluster (driver and workers) needs; no secret values."""

    tracking_uri: str
    values: dict[str, str]  # plain, non-secret values
    references: dict[str, str] = field(default_factory=dict)  # name -> {{secrets/s/k}}

    def spark_env_vars(self) -> dict[str, str]:
        """For cluster configuration / a job's new cluster: values plus secret references."""
        return {**self.values, **self.references}


def _is_reference(value: Any) -> bool:
    from spark_aml_bridge.platforms.databricks.credentials import is_secret_reference

    return isinstance(value, str) and is_secret_reference(value)


def _tracking_uri(config: BridgeConfig) -> str:
    from spark_aml_bridge.workspace import address_from_settings

    return address_from_settings(config, need_host_for="a cluster").tracking_uri()


def databricks_cluster_env(
    settings: Mapping[str, Any] | None = None,
    *,
    client_secret_ref: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> DatabricksClusterEnv:
    """The cluster environment for `settings` (names of config.py's table).

    A sensitive setting may only be a ``{{secrets/<scope>/<key>}}`` reference;
    `client_secret_ref` is the reference for ``AZURE_CLIENT_SECRET`` (service principal from env).
    `environ` (default: this process's) supplies ``SPARK_AML_BRIDGE_*`` defaults.
    """
    from spark_aml_bridge.config import SETTINGS, resolve_config
    from spark_aml_bridge.credentials.sources import parse_spec

    settings = dict(settings or {})
    references: dict[str, str] = {}
    for setting in SETTINGS:
        value = settings.pop(setting.name, None) if setting.sensitive else None
        if value is None:
            continue
        if not _is_reference(value):
            raise ConfigError(
                f"'{setting.name}' is a secret: a cluster configuration may hold only a secret "
                "reference for it, never the value",
                "store it in a secret scope and pass {{secrets/<scope>/<key>}} "
                "(or use credential databricks-secret-scope)",
            )
        references[setting.env] = value
    if client_secret_ref is not None:
        if not _is_reference(client_secret_ref):
            raise ConfigError(
                "the client secret reference must look like {{secrets/<scope>/<key>}}",
                "create it with `databricks secrets put-secret <scope> <key>` and pass "
                "--client-secret-ref '{{secrets/<scope>/<key>}}'",
            )
        references["AZURE_CLIENT_SECRET"] = client_secret_ref
    env = {k: v for k, v in (environ or {}).items() if k.startswith("SPARK_AML_BRIDGE_")}
    for setting in SETTINGS:  # a secret from the generating machine's env never goes further
        if setting.sensitive:
            env.pop(setting.env, None)
    config = resolve_config(settings, env=env, spark_conf={})
    uri = _tracking_uri(config)
    resolved = config.replace(workspace=uri, **dict.fromkeys(_ADDRESS_PARTS))
    values = {"MLFLOW_TRACKING_URI": uri, **resolved.to_env()}
    source = parse_spec(config.credential or "auto")[0]
    if source in _ENV_SECRET_SOURCES:
        # The service principal's ids are not secret: plain values, where the source reads them.
        for name, env_name in (("tenant_id", "AZURE_TENANT_ID"), ("client_id", "AZURE_CLIENT_ID")):
            value = getattr(config, name)
            if value:
                values[env_name] = str(value)
        if "AZURE_CLIENT_SECRET" not in references:
            raise ConfigError(
                f"credential '{source}' reads AZURE_CLIENT_SECRET, which the cluster must get "
                "from a secret scope",
                "pass --client-secret-ref '{{secrets/<scope>/<key>}}' (it goes into the cluster's "
                "environment variables, where Databricks resolves it)",
            )
    for name, value in values.items():
        if _is_reference(value):
            references[name] = value
    values = {k: v for k, v in values.items() if k not in references}
    return DatabricksClusterEnv(uri, values, references)


# -- the init script -------------------------------------------------------------------------------

_SCRIPT = """#!/bin/bash
# spark-aml-bridge {version}: cluster-scoped init script for Databricks (generated, do not edit).
# Every notebook and job on this cluster, on the driver and on every worker, tracks MLflow to
#   {tracking_uri}
# with credential '{credential}'. No secret is in this script.
{reference_help}#
# Paths can be overridden (tests, custom images): SPARK_AML_BRIDGE_INIT_PIP, _SPARK_ENV.
set -euo pipefail

PIP="${{SPARK_AML_BRIDGE_INIT_PIP:-{pip}}}"
SPARK_ENV="${{SPARK_AML_BRIDGE_INIT_SPARK_ENV:-{spark_env}}}"
PACKAGE={package}

log() {{ echo "spark-aml-bridge init: $*" >&2; }}

# 1. Install the package into the cluster's Python without changing what the runtime ships:
#    every installed distribution is pinned, so pip only adds what is missing.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PIP" list --format=freeze --disable-pip-version-check 2>/dev/null \\
  | grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==' \\
  | grep -viE '^spark[-_.]aml[-_.]bridge==' > "$work/installed.txt" || true
if ! "$PIP" install --disable-pip-version-check --constraint "$work/installed.txt" "$PACKAGE"; then
  log "no solution with every installed package pinned; retrying with the runtime's MLflow and"
  log "PySpark pinned (other packages may be upgraded)"
  grep -iE '^({runtime_pins})==' "$work/installed.txt" >"$work/runtime.txt" || true
  "$PIP" install --disable-pip-version-check --constraint "$work/runtime.txt" "$PACKAGE"
fi

# 2. The settings, for the driver and every worker (Databricks sources spark-env.sh for both).
mkdir -p "$(dirname "$SPARK_ENV")"
touch "$SPARK_ENV"
sed -i '/^{block_begin}$/,/^{block_end}$/d' "$SPARK_ENV"
cat >> "$SPARK_ENV" <<'SPARK_AML_BRIDGE_ENV'
{block_begin}
{exports}
{block_end}
SPARK_AML_BRIDGE_ENV
{checks}log "installed $PACKAGE and wrote the settings to $SPARK_ENV"
"""

_CHECK = """
# 3. What only the cluster's configuration can provide (a warning: the cluster still starts).
#    On standard access mode (DBR 19+) init scripts do not see cluster variables: ignore it there.
case "${{{name}:-}}" in
  "")
    log "warning: {name} is not set; add to the cluster's environment variables:"
    log "  {name}={reference}" ;;
  "{{{{secrets/"*)
    log "warning: {name} holds an unresolved secret reference: restart the cluster,"
    log "  and check that the secret exists and that the cluster owner can read it" ;;
esac
"""


def databricks_init_script(
    settings: Mapping[str, Any] | None = None,
    *,
    client_secret_ref: str | None = None,
    package: str | None = None,
    pip: str = CLUSTER_PIP,
    spark_env: str = CLUSTER_SPARK_ENV,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The bash text of a cluster-scoped init script for `settings`."""
    cluster = databricks_cluster_env(settings, client_secret_ref=client_secret_ref, environ=environ)
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in cluster.values.items())
    reference_help = ""
    checks = ""
    if cluster.references:
        lines = "".join(f"#   {name}={ref}\n" for name, ref in cluster.references.items())
        reference_help = (
            "#\n# Add to the cluster's Environment variables (Advanced options > Spark), which\n"
            "# Databricks resolves from the secret scope when the cluster starts:\n" + lines
        )
        checks = "".join(
            _CHECK.format(name=name, reference=ref) for name, ref in cluster.references.items()
        )
    credential = cluster.values.get("SPARK_AML_BRIDGE_CREDENTIAL", "auto")
    return _SCRIPT.format(
        version=__version__,
        tracking_uri=cluster.tracking_uri,
        credential=credential,
        reference_help=reference_help,
        pip=pip,
        spark_env=spark_env,
        package=shlex.quote(package or f"spark-aml-bridge=={__version__}"),
        runtime_pins="|".join(RUNTIME_PINS),
        block_begin=BLOCK_BEGIN,
        block_end=BLOCK_END,
        exports=exports,
        checks=checks,
    )
