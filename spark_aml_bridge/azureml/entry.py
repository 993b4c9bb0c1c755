"""Entry points MLflow loads while `import mlflow` runs.

Kept tiny and free of top-level MLflow imports: an error here (other than ImportError) would break
`import mlflow` for everyone, and importing MLflow from here would recurse into MLflow's own import.
"""

from __future__ import annotations

from typing import Any


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    # The workspace store, with durable writes when the `durable_writes` setting is on.
    from spark_aml_bridge.azureml.durable_store import DurableWorkspaceStore

    return DurableWorkspaceStore(store_uri, artifact_uri)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    from spark_aml_bridge.azureml.registry_store import AzureMLRegistryStore

    return AzureMLRegistryStore(store_uri)


def artifact_repository(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
    from spark_aml_bridge.azureml.artifacts import AzureMLArtifactRepository

    return AzureMLArtifactRepository(artifact_uri, *args, **kwargs)


class WorkspaceAuthProvider:
    """MLflow request-auth provider named 'spark-aml-bridge' (see azureml/auth.py)."""

    def get_name(self) -> str:
        return "spark-aml-bridge"

    def get_auth(self) -> Any:
        from spark_aml_bridge.azureml.auth import bearer_auth

        return bearer_auth()


class PlatformRunContext:
    """MLflow run context provider: platform tags on new runs while a workspace is connected."""

    def in_context(self) -> bool:
        from spark_aml_bridge.session import any_active

        return any_active()

    def tags(self) -> dict[str, str]:
        from spark_aml_bridge.context import platform_tags

        return platform_tags()
