"""The ``azureml`` model registry store: MLflow's stock registry REST under the workspace prefix.

Operations Azure ML documents as unsupported fail here with one sentence saying so and what to
do instead, rather than with whatever the service answers.
"""

from __future__ import annotations

from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore

from spark_aml_bridge.azureml.failures import calling
from spark_aml_bridge.azureml.tracking_store import workspace_host_creds


def _unsupported(what: str, instead: str) -> MlflowException:
    return MlflowException(
        f"Azure ML's model registry does not support {what}; {instead}",
        error_code="INVALID_PARAMETER_VALUE",
    )


class AzureMLRegistryStore(RegistryRestStore):
    def __init__(self, store_uri: str) -> None:
        from spark_aml_bridge.session import session_for_store_uri

        self.workspace_session = session_for_store_uri(store_uri)
        address = self.workspace_session.address
        creds = workspace_host_creds(address.rest_base, self.workspace_session.ca_bundle)
        super().__init__(lambda: creds)

    def _call_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        # MLflow-private seam (BaseRestStore._call_endpoint): see failures.py.
        return calling(self, super()._call_endpoint, *args, **kwargs)

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Any = None,
        run_link: str | None = None,
        description: str | None = None,
        local_model_path: str | None = None,
        model_id: str | None = None,
    ) -> Any:
        if not model_id and isinstance(source, str) and source.startswith("models:/m-"):
            model_id = source[len("models:/") :].split("/", 1)[0]
        kwargs: dict[str, Any] = {}
        model = None
        if model_id:
            model = self._client_side_logged_model(model_id)
            if model is None:
                kwargs["model_id"] = model_id  # the workspace knows logged models itself
            else:
                # The workspace has no logged models: register the model's files by location.
                source, run_id = model.artifact_location, run_id or model.source_run_id
        version = super().create_model_version(
            name, source, run_id, tags, run_link, description, local_model_path, **kwargs
        )
        if model is not None:
            # What MLflow's tracking server does on this call: the model lists its versions.
            self._tracking_store().set_model_versions_tags(name, int(version.version), model_id)
        return version

    def _tracking_store(self) -> Any:
        from spark_aml_bridge.azureml.tracking_store import AzureMLTrackingStore

        return AzureMLTrackingStore(self.workspace_session.tracking_uri)

    def _client_side_logged_model(self, model_id: str) -> Any:
        store = self._tracking_store()
        model = store.get_logged_model(model_id)
        return None if self.workspace_session.capabilities.get("logged_models", True) else model

    def rename_registered_model(self, name: str, new_name: str) -> Any:
        raise _unsupported(
            "renaming registered models", "register the versions under the new name instead"
        )

    def delete_registered_model(self, name: str) -> Any:
        raise _unsupported(
            "deleting a whole registered model",
            "delete each of its versions with MlflowClient().delete_model_version(name, version)",
        )
