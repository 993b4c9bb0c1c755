"""Entry point MLflow loads while ``import mlflow`` runs: tiny, and no MLflow import at the top."""

from __future__ import annotations

from typing import Any


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    from spark_aml_bridge.dual.store import DualTrackingStore

    return DualTrackingStore(store_uri, artifact_uri)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    from spark_aml_bridge.dual.registry import DualRegistryStore

    return DualRegistryStore(store_uri, tracking_uri)
