"""The ``azureml`` model registry store: MLflow's stock registry REST under the workspace prefix."""

from __future__ import annotations

from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore

from spark_aml_bridge.azureml.tracking_store import workspace_host_creds


class AzureMLRegistryStore(RegistryRestStore):
    def __init__(self, store_uri: str) -> None:
        from spark_aml_bridge.session import session_for_store_uri

        self.workspace_session = session_for_store_uri(store_uri)
        address = self.workspace_session.address
        creds = workspace_host_creds(address.rest_base, self.workspace_session.ca_bundle)
        super().__init__(lambda: creds)
