"""The stores of the two sides of dual tracking, built from MLflow's own registries."""

from __future__ import annotations

import inspect
from typing import Any

from spark_aml_bridge.errors import ConfigError
from spark_aml_bridge.mlflow_private import registry_store_builder, tracking_store_builder


def build_store(uri: str) -> Any:
    """A new MLflow tracking store for `uri`, from MLflow's own registry (so plugins apply).

    The builder is called directly: MLflow holds a non-reentrant lock while it builds a store,
    and this runs inside the dual store's own build.
    """
    if uri.startswith("dual:"):
        raise ConfigError(
            "a side of dual tracking cannot itself be a dual tracking URI",
            "set dual_primary and dual_mirror to plain tracking URIs",
        )
    return tracking_store_builder(uri)(store_uri=uri, artifact_uri=None)


def build_registry_store(uri: str) -> Any:
    """A new registry store for `uri` from MLflow's registry (called directly: MLflow holds a
    non-reentrant lock while it builds one)."""
    builder = registry_store_builder(uri)
    if "tracking_uri" in inspect.signature(builder).parameters:
        return builder(store_uri=uri, tracking_uri=uri)
    return builder(store_uri=uri)


def stores_for(primary_uri: str, mirror_uri: str) -> tuple[Any, Any]:
    return build_store(primary_uri), build_store(mirror_uri)
