"""Make sure our plugins serve the ``azureml`` scheme even when azureml-mlflow is installed too.

MLflow keeps whichever entry point for a scheme it enumerates last, in no defined order, so when
another distribution also claims ``azureml`` we register ours again through MLflow's registries.
"""

from __future__ import annotations

from importlib.metadata import entry_points

SCHEME = "azureml"
_GROUPS = ("mlflow.tracking_store", "mlflow.model_registry_store")


def competing_plugins() -> list[str]:
    """Distributions other than ours that register the ``azureml`` scheme."""
    found = set()
    for group in _GROUPS:
        for ep in entry_points(group=group):
            dist = getattr(getattr(ep, "dist", None), "name", "") or ""
            if ep.name == SCHEME and not ep.value.startswith("spark_aml_bridge."):
                found.add(dist or ep.value)
    return sorted(found)


def ensure_our_plugins() -> list[str]:
    """Re-register our builders if another plugin claims the scheme; returns the competitors."""
    competitors = competing_plugins()
    if not competitors:
        return []
    from spark_aml_bridge.azureml.entry import registry_store, tracking_store
    from spark_aml_bridge.mlflow_private import register_store_plugins

    register_store_plugins(SCHEME, tracking_store, registry_store)
    return competitors
