"""The ``azureml`` tracking store: MLflow's stock REST store under the workspace's REST prefix.

Authentication goes through MLflow's request-auth plugin point (see auth.py). Creates are made
safe to retry: MLflow retries POSTs on 5xx, and a create whose response was lost would otherwise
leave a duplicate run or fail on an experiment that it created itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from mlflow.entities import RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.rest_store import RestStore

from spark_aml_bridge.azureml.auth import AUTH_PROVIDER_NAME
from spark_aml_bridge.azureml.failures import calling
from spark_aml_bridge.azureml.logged_models import ClientSideLoggedModels, run_id_for
from spark_aml_bridge.azureml.model_store import RunHomedLoggedModels, with_outputs
from spark_aml_bridge.azureml.run_models import home_run_of
from spark_aml_bridge.azureml.search import DEFAULT_MAX_RUNS, ClientSideRunSearch, plan_search
from spark_aml_bridge.errors import BridgeError
from spark_aml_bridge.mlflow_private import (
    create_run_request,
    host_creds,
    run_from_create_response,
)
from spark_aml_bridge.rest import is_transient_status, parsed, retry_wait, send_once

_log = logging.getLogger(__name__)

# A client-made id on every run this store creates, so a retried create can find its first try.
CREATE_KEY_TAG = "spark_aml_bridge.create_key"


def workspace_host_creds(rest_base: str, ca_bundle: str | None) -> Any:
    return host_creds(rest_base, auth=AUTH_PROVIDER_NAME, server_cert_path=ca_bundle)


class AzureMLTrackingStore(RunHomedLoggedModels, ClientSideLoggedModels, RestStore):
    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        from spark_aml_bridge.session import session_for_store_uri

        self.workspace_session = session_for_store_uri(store_uri)
        address = self.workspace_session.address
        creds = workspace_host_creds(address.rest_base, self.workspace_session.ca_bundle)
        super().__init__(lambda: creds)
        from spark_aml_bridge.links import take_over_run_links

        take_over_run_links()

    # -- the run's studio links when it ends (MLflow's own would name the REST endpoint) --------
    def update_run_info(self, run_id: str, run_status: Any, end_time: Any, run_name: Any) -> Any:
        info = super().update_run_info(run_id, run_status, end_time, run_name)
        if end_time is not None and self._print_links_for_user():
            try:
                from spark_aml_bridge.links import print_run_links

                run = self.get_run(run_id)
                if run.info.experiment_id != getattr(self, "_models_experiment_id", None):
                    print_run_links(self.workspace_session, run)
            except Exception as exc:  # noqa: BLE001 - a link must never fail the user's run
                _log.debug("no studio link for run %s: %s", run_id, exc)
        return info

    def _print_links_for_user(self) -> bool:
        """Only where MLflow itself would print: the user's tracking store is this workspace
        (not a dual store's mirror worker, which also ends runs here)."""
        from spark_aml_bridge.links import prints_run_links

        if not prints_run_links():
            return False
        import threading

        if threading.current_thread().name.startswith("spark-aml-bridge"):
            return False  # a background sender (mirror, durable writes), not the user's call
        import mlflow

        uri = mlflow.get_tracking_uri() or ""
        host = (self.workspace_session.address.host or "").lower()
        return uri.lower().startswith(f"azureml://{host}/")

    def _call_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        # MLflow-private seam (RestStore._call_endpoint, MLflow 2 and 3): every REST call of the
        # store passes here, so a transport failure becomes one clear error (failures.py).
        return calling(self, super()._call_endpoint, *args, **kwargs)

    # -- MLflow 3 logged models: the server's API where it has one, else client side ------------
    def _native_logged_models(self) -> bool:
        capabilities = self.workspace_session.capabilities
        if "logged_models" not in capabilities:
            response = send_once(
                self.get_host_creds(),
                "/api/2.0/mlflow/logged-models/search",
                "POST",
                # Any id: only whether the route exists matters (AML's ids are GUIDs, and no
                # experiment "0" need exist).
                json_body={"experiment_ids": [str(uuid.uuid4())], "max_results": 1},
            )
            # AML answers 404 with an empty body: it has no logged-model API. A server that has
            # one answers, or says in MLflow's words that the experiment does not exist.
            capabilities["logged_models"] = response.status_code != 404 or _mlflow_error(response)
        return capabilities["logged_models"]

    def _logged_models(
        self, mlflow_method: str, client_side: str, model_id: str | None = None
    ) -> Any:
        """The one dispatch of MLflow 3's logged-model API: the server's own where it has one;
        else client side, in the model's home run (``_rm_*``, model_store.py) or, for the
        ``m-<run id>`` models of earlier versions, their hidden run (``_lm_*``, logged_models.py).
        `model_id` is None for calls not about one model (create, search, log_outputs)."""
        if self._native_logged_models():
            return getattr(super(), mlflow_method)
        by_home_run = model_id is None or home_run_of(model_id)
        return getattr(self, ("_rm_" if by_home_run else "_lm_") + client_side)

    def create_logged_model(self, experiment_id: str, *args: Any, **kwargs: Any) -> Any:
        return self._logged_models("create_logged_model", "create")(experiment_id, *args, **kwargs)

    def log_logged_model_params(self, model_id: str, params: Any) -> None:
        return self._logged_models("log_logged_model_params", "log_params", model_id)(
            model_id, params
        )

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> Any:
        return self._logged_models("get_logged_model", "get", model_id)(model_id, allow_deleted)

    def delete_logged_model(self, model_id: str) -> None:
        return self._logged_models("delete_logged_model", "delete", model_id)(model_id)

    def search_logged_models(self, experiment_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        return self._logged_models("search_logged_models", "search")(
            experiment_ids, *args, **kwargs
        )

    def finalize_logged_model(self, model_id: str, status: Any) -> Any:
        return self._logged_models("finalize_logged_model", "finalize", model_id)(model_id, status)

    def set_logged_model_tags(self, model_id: str, tags: Any) -> None:
        return self._logged_models("set_logged_model_tags", "set_tags", model_id)(model_id, tags)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        return self._logged_models("delete_logged_model_tag", "delete_tag", model_id)(model_id, key)

    def log_outputs(self, run_id: str, models: Any) -> None:
        return self._logged_models("log_outputs", "log_outputs")(run_id, models)

    def get_run(self, run_id: str) -> Any:
        return with_outputs(super().get_run(run_id))

    def _search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str | None,
        run_view_type: Any,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> Any:
        # What Azure ML refuses (LIKE/ILIKE, ordering by metrics/params/tags) is answered on
        # the client with MLflow's own search semantics (search.py).
        plan = plan_search(filter_string, order_by)
        if plan.server_side:
            runs, token = super()._search_runs(
                experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
            )
        else:
            runs, token = self._client_side_search().search(
                experiment_ids,
                filter_string,
                run_view_type,
                max_results,
                order_by,
                page_token,
                plan.pushdown,
            )
        return [with_outputs(run) for run in runs], token

    def _client_side_search(self) -> ClientSideRunSearch:
        from spark_aml_bridge.session import connected_session

        search = self.__dict__.get("_client_search")
        if search is None:
            search = self.__dict__["_client_search"] = ClientSideRunSearch(
                super()._search_runs, DEFAULT_MAX_RUNS
            )
        # MLflow caches this store per URI: the limit follows the live connect()'s settings
        # when it is to this workspace, else those this store was opened with.
        live = connected_session()
        session = self.workspace_session
        if live is not None and live.address.host == session.address.host:
            session = live
        search.max_runs = session.config.search_max_client_side_runs or DEFAULT_MAX_RUNS
        return search

    def log_metric(self, run_id: str, metric: Any) -> None:
        if getattr(metric, "model_id", None) and not self._native_logged_models():
            return self.log_batch(run_id, metrics=[metric], params=[], tags=[])
        return super().log_metric(run_id, metric)

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        linked = [m for m in metrics or [] if getattr(m, "model_id", None)]
        if linked and not self._native_logged_models():
            # Without a server-side model API the run keeps the values; the model's own record
            # keeps them with their dataset and run links.
            metrics = [_without_model(m) for m in metrics]
            homed = [m for m in linked if home_run_of(m.model_id)]
            if homed:
                self._rm_log_metrics(run_id, homed)
            by_model: dict[str, list] = {}
            for metric in linked:
                if not home_run_of(metric.model_id):
                    by_model.setdefault(metric.model_id, []).append(_without_model(metric))
            for model_id, model_metrics in by_model.items():
                super().log_batch(run_id_for(model_id), metrics=model_metrics, params=[], tags=[])
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags)

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: Any = None, tags: Any = None) -> str:
        started = time.time()
        try:
            return super().create_experiment(name, artifact_location, tags)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = self.get_experiment_by_name(name)
            # Created during this very call: MLflow retried a create whose answer was lost.
            if existing is not None and existing.creation_time / 1000 >= started - 120:
                _log.info("experiment '%s' was created by a retried request; using it", name)
                return existing.experiment_id
            raise

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: Any
    ):
        from mlflow.entities import Run

        key = uuid.uuid4().hex
        all_tags = [*(tags or []), RunTag(CREATE_KEY_TAG, key)]
        endpoint, method, body = create_run_request(
            experiment_id, user_id, start_time, all_tags, run_name
        )
        response = calling(
            self,
            self._post_once_retrying,
            endpoint,
            method,
            body,
            lambda: self._find_created(experiment_id, key),
        )
        if isinstance(response, Run):
            return response
        return run_from_create_response(response)

    def _find_created(self, experiment_id: str, key: str) -> Any:
        found = self.search_runs(
            [str(experiment_id)],
            f"tags.`{CREATE_KEY_TAG}` = '{key}'",
            ViewType.ALL,
            max_results=1,
        )
        return found[0] if found else None

    def _post_once_retrying(
        self, endpoint: str, method: str, body: dict, find_existing: Any
    ) -> Any:
        """POST without MLflow's blind retries; before a retry, look for the first try's result."""
        from mlflow.environment_variables import (
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
            MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        )

        attempts = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() + 1
        backoff = max(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), 0.5)
        for attempt in range(attempts):
            last_try = attempt == attempts - 1
            if attempt:
                existing = find_existing()
                if existing is not None:
                    _log.info("a retried create had already been applied; not creating twice")
                    return existing
            try:
                response = send_once(self.get_host_creds(), endpoint, method, json_body=body)
            except MlflowException as exc:
                # A refusal (401 after refresh, 403) is final: retrying cannot grant access.
                if last_try or isinstance(exc.__context__, BridgeError):
                    raise
                time.sleep(min(backoff * 2**attempt, 60))
                continue
            if is_transient_status(response) and not last_try:
                time.sleep(retry_wait(response, backoff * 2**attempt))
                continue
            return parsed(response, endpoint)
        raise MlflowException(f"{endpoint} did not succeed after {attempts} attempts")


def _mlflow_error(response: Any) -> bool:
    try:
        return "error_code" in response.json()
    except ValueError:
        return False


def _without_model(metric: Any) -> Any:
    from mlflow.entities import Metric

    return Metric(metric.key, metric.value, metric.timestamp, metric.step)
