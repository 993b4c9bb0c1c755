"""The ``dual:`` tracking URI: both sides, each any MLflow tracking URI, in one string.

``dual:?primary=<uri>&mirror=<uri>[&spool=<dir>][&strict=true]`` (values percent-encoded). It is
what MLflow, Spark executors and ``MLFLOW_TRACKING_URI`` carry, so a process that only has the
URI builds the same store; MLflow caches one store per URI, so different settings make different
URIs. Settings absent from the URI come from the settings table (env / Spark conf).
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlparse

from spark_aml_bridge.errors import ConfigError

SCHEME = "dual"

# Bookkeeping tags: where each side's id is recorded on the other side.
PRIMARY_RUN_TAG = "spark_aml_bridge.primary.run_id"  # on mirror runs
PRIMARY_EXPERIMENT_TAG = "spark_aml_bridge.primary.experiment_id"  # on mirror experiments
PRIMARY_MODEL_TAG = "spark_aml_bridge.primary.model_id"  # on mirror logged models
MIRROR_RUN_TAG = "spark_aml_bridge.mirror.run_id"  # on primary runs
MIRROR_EXPERIMENT_TAG = "spark_aml_bridge.mirror.experiment_id"  # on primary experiments
MIRROR_MODEL_TAG = "spark_aml_bridge.mirror.model_id"  # on primary logged models
# On runs a dual store created (both sides): which spool mirrors them. Other processes wait for
# that spool instead of creating the mirror run themselves.
ORIGIN_TAG = "spark_aml_bridge.dual.origin"
CREATE_KEY_TAG = "spark_aml_bridge.create_key"  # the azureml store's retry key (per side)
# Tags that legitimately differ between the sides; verify ignores them.
BOOKKEEPING_PREFIXES = (
    "spark_aml_bridge.primary.",
    "spark_aml_bridge.mirror.",
    CREATE_KEY_TAG,
    # The workspace's run-homed logged models (azureml/run_models.py).
    "spark_aml_bridge.models",
    "spark_aml_bridge.has_models",
    "spark_aml_bridge.model_outputs",
)


def is_bookkeeping(key: str) -> bool:
    return key.startswith(BOOKKEEPING_PREFIXES)


def dual_uri(primary: str, mirror: str, **options: str | None) -> str:
    if not primary or not mirror:
        raise ConfigError(
            "dual tracking needs both a primary and a mirror tracking URI",
            "set dual_primary and dual_mirror (native, workspace, or an MLflow tracking URI)",
        )
    if primary == mirror:
        raise ConfigError(
            f"the primary and the mirror are the same tracking URI ({primary})",
            "point dual_primary and dual_mirror at two different tracking servers",
        )
    uri = f"{SCHEME}:?primary={quote(primary, safe='')}&mirror={quote(mirror, safe='')}"
    for key, value in options.items():
        if value not in (None, ""):
            uri += f"&{key}={quote(str(value), safe='')}"
    return uri


def dual_options(uri: str) -> dict[str, str]:
    """Settings a ``dual:`` URI carries besides its sides (``spool``, ``strict``), so that every
    process given the URI (Spark executors too) builds the same store."""
    query = parse_qs(urlparse(uri).query, keep_blank_values=True)
    return {k: v[0] for k, v in query.items() if k not in ("primary", "mirror") and v}


def parse_dual_uri(uri: str) -> tuple[str, str]:
    """(primary, mirror) of a ``dual:`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != SCHEME:
        raise ConfigError(
            f"'{uri}' is not a dual tracking URI",
            f"use {SCHEME}:?primary=<tracking uri>&mirror=<tracking uri> (percent-encoded)",
        )
    query = parse_qs(parsed.query, keep_blank_values=True)
    primary = (query.get("primary") or [""])[0]
    mirror = (query.get("mirror") or [""])[0]
    if not primary or not mirror:
        raise ConfigError(
            f"the dual tracking URI '{uri}' lacks its primary or its mirror",
            f"use {SCHEME}:?primary=<tracking uri>&mirror=<tracking uri> (percent-encoded)",
        )
    return primary, mirror


def is_databricks_uri(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return uri in ("databricks", "databricks-uc") or scheme in ("databricks", "databricks-uc")


def describe(uri: str) -> str:
    """A short label for a tracking URI, without credentials or query strings."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file", "sqlite"):
        return uri
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}" if host else f"{parsed.scheme}:"
