"""The MLflow private APIs this package reaches, in one place, each use explained.

Private here means ``_``-prefixed, or outside MLflow's documented public API (``mlflow.store.*``,
``mlflow.utils.*``, ``mlflow.tracking._*``, ``mlflow.protos``). Every such import of the package
is in this module, with why it is needed and the MLflow versions it was checked on (3.17.2 and
2.22.5 here); where there is a public fallback, a future MLflow without the API degrades instead
of breaking.

Not routed through here: MLflow's documented plugin API, which the package subclasses where it
plugs in — the tracking and registry ``RestStore`` / ``AbstractStore``, ``ArtifactRepository``,
``RequestAuthProvider`` and ``RunContextProvider`` (MLflow's "Writing your own MLflow plugins"
names them as the base classes of plugins); and MLflow's public modules (``mlflow``,
``mlflow.entities``, ``mlflow.exceptions``, ``mlflow.environment_variables``, ``mlflow.models``).
The emulator (``spark_aml_bridge/emulator``) is a test double that hosts MLflow's own server and
is not counted.
"""

from __future__ import annotations

from typing import Any


def latest_active_run() -> Any | None:
    """The driver's most recently started active run across *all* threads.

    ``mlflow.active_run()`` only sees the calling thread, but executors ask from the driver
    service's thread while the user's run is active on the notebook's thread (and Hyperopt's
    SparkTrials submits trials from threads of its own). MLflow keeps every thread's run stack
    and reads them the same way for runs started in other threads
    (``mlflow.tracking.fluent._get_latest_active_run``, MLflow 2.x and 3.x).
    """
    import mlflow

    try:
        from mlflow.tracking.fluent import _get_latest_active_run
    except ImportError:  # not in this MLflow: the calling thread's run is all we can see
        return mlflow.active_run()
    return _get_latest_active_run()


def validate_logged_model_name(name: str | None) -> None:
    """MLflow's own rule for logged-model names (its tracking server applies it on create), so
    a name MLflow refuses is refused here with MLflow's words
    (``mlflow.utils.validation._validate_logged_model_name``, MLflow 3)."""
    try:
        from mlflow.utils.validation import _validate_logged_model_name
    except ImportError:  # no such rule in this MLflow: the server would not check either
        return
    _validate_logged_model_name(name)


def random_name() -> str:
    """The random names MLflow's server gives unnamed runs and models
    (``mlflow.utils.name_utils._generate_random_name``)."""
    try:
        from mlflow.utils.name_utils import _generate_random_name
    except ImportError:
        import uuid

        return f"model-{uuid.uuid4().hex[:8]}"
    return _generate_random_name()


def tracking_store_builder(uri: str) -> Any:
    """MLflow's builder of the tracking store for `uri`, from MLflow's own store registry (so
    plugins apply), called directly: ``mlflow.tracking._tracking_service.utils._get_store``
    holds a non-reentrant lock while it builds a store, and the dual store builds its sides
    inside its own build (``_tracking_store_registry``; checked on MLflow 3.17.2 and 2.22.5)."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    return _tracking_store_registry.get_store_builder(uri)


def registry_store_builder(uri: str) -> Any:
    """MLflow's builder of the model registry store for `uri`, for the same reason
    (``mlflow.tracking._model_registry.utils._get_store_registry``; checked on MLflow 3.17.2
    and 2.22.5)."""
    from mlflow.tracking._model_registry.utils import _get_store_registry

    return _get_store_registry().get_store_builder(uri)


def http_request(host_creds: Any, endpoint: str, method: str, **kwargs: Any) -> Any:
    """MLflow's REST transport, so calls carry what MLflow's stores send (auth by the request
    auth provider, TLS settings, user agent) (``mlflow.utils.rest_utils.http_request``; checked
    on MLflow 3.17.2 and 2.22.5)."""
    from mlflow.utils.rest_utils import http_request as mlflow_http_request

    return mlflow_http_request(host_creds, endpoint, method, **kwargs)


def verify_rest_response(response: Any, endpoint: str) -> Any:
    """MLflow's reading of a REST error answer into its own ``MlflowException`` (with the
    server's error code), as the stores raise it (``mlflow.utils.rest_utils``; checked on MLflow
    3.17.2 and 2.22.5)."""
    from mlflow.utils.rest_utils import verify_rest_response as mlflow_verify

    return mlflow_verify(response, endpoint)


# -- stores and their registries --------------------------------------------------------------
def cached_tracking_store(uri: str) -> Any:
    """The tracking store MLflow itself uses for `uri` (its per-URI cache), so a flush or a link
    reaches the very store MLflow writes through
    (``mlflow.tracking._tracking_service.utils._get_store``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store(uri)


def register_store_plugins(scheme: str, tracking_store: Any, registry_store: Any) -> None:
    """Register our store builders for `scheme` again when another plugin claimed it (MLflow has
    no public API for this; ``_tracking_store_registry`` and ``_get_store_registry()``; checked on
    3.17.2 and 2.22.5)."""
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    _tracking_store_registry.register(scheme, tracking_store)
    _get_store_registry().register(scheme, registry_store)


def set_uris() -> tuple[str | None, str | None]:
    """The tracking and registry URIs set in this process (None when unset): read, never
    written, so disconnect() can tell "unset" from "set to the default" (the public getters
    return the default; ``_tracking_uri`` / ``_registry_uri`` module globals; checked on 3.17.2
    and 2.22.5)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


def host_creds(host: str, *, auth: str, server_cert_path: str | None) -> Any:
    """``MlflowHostCreds``: what ``RestStore``'s constructor wants from its ``get_host_creds``
    (``mlflow.utils.rest_utils``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(host=host, auth=auth, server_cert_path=server_cert_path)


def paged_list(items: list[Any], token: str | None) -> Any:
    """``PagedList``, the result type of the stores' search methods that MLflow's client reads
    ``.token`` from (``mlflow.store.entities.paged_list``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.store.entities.paged_list import PagedList

    return PagedList(items, token)


# -- MLflow's search semantics, for searches evaluated on the client ---------------------------
def run_search_utils() -> Any:
    """MLflow's run-search semantics (``SearchUtils``: parse filters and order_by, filter, sort,
    paginate), so a search the workspace refuses and the client evaluates answers as MLflow's
    server would (``mlflow.utils.search_utils``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.utils.search_utils import SearchUtils

    return SearchUtils


def filter_and_sort_logged_models(
    models: list[Any], filter_string: str | None, datasets: Any, order_by: Any
) -> list[Any]:
    """MLflow's own logged-model search semantics, for models kept client side
    (``SearchLoggedModelsUtils``, MLflow 3 only; checked on 3.17.2)."""
    from mlflow.utils.search_utils import SearchLoggedModelsUtils

    models = SearchLoggedModelsUtils.filter_logged_models(models, filter_string, datasets)
    return SearchLoggedModelsUtils.sort(models, order_by)


def invalid_parameter_value() -> int:
    """MLflow's INVALID_PARAMETER_VALUE error code, as its own exceptions carry it
    (``mlflow.protos.databricks_pb2``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return INVALID_PARAMETER_VALUE


# -- REST bodies MLflow's store would send -----------------------------------------------------
def create_run_request(
    experiment_id: str, user_id: str, start_time: int, tags: list[Any], run_name: Any
) -> tuple[str, str, dict[str, Any]]:
    """(endpoint, method, JSON body) of MLflow's CreateRun, exactly as ``RestStore.create_run``
    builds it, for a create sent once at a time (``mlflow.protos.service_pb2.CreateRun``,
    ``mlflow.utils.proto_json_utils.message_to_json`` and the store's ``_METHOD_TO_INFO``: on the
    class in MLflow 3, in the module in MLflow 2; checked on 3.17.2 and 2.22.5)."""
    import json

    from mlflow.protos.service_pb2 import CreateRun
    from mlflow.store.tracking import rest_store
    from mlflow.utils.proto_json_utils import message_to_json

    body = message_to_json(
        CreateRun(
            experiment_id=str(experiment_id),
            user_id=user_id,
            start_time=start_time,
            tags=[t.to_proto() for t in tags],
            run_name=run_name,
        )
    )
    routes = getattr(rest_store.RestStore, "_METHOD_TO_INFO", None) or rest_store._METHOD_TO_INFO
    endpoint, method = routes[CreateRun]
    return endpoint, method, json.loads(body)


def run_from_create_response(response: dict[str, Any]) -> Any:
    """The ``Run`` of a CreateRun answer, read as ``RestStore.create_run`` reads it
    (``mlflow.utils.proto_json_utils.parse_dict``; checked on 3.17.2 and 2.22.5)."""
    from mlflow.entities import Run
    from mlflow.protos.service_pb2 import CreateRun
    from mlflow.utils.proto_json_utils import parse_dict

    proto = CreateRun.Response()
    parse_dict(response, proto)
    return Run.from_proto(proto.run)


def dataset_inputs_from_dicts(rows: list[dict[str, Any]]) -> list[Any]:
    """``DatasetInput`` entities from their proto-JSON dicts (as spooled by dual/codec.py)
    (``mlflow.protos.service_pb2.DatasetInput``; checked on 3.17.2 and 2.22.5)."""
    from google.protobuf.json_format import ParseDict
    from mlflow.entities import DatasetInput
    from mlflow.protos.service_pb2 import DatasetInput as DatasetInputProto

    return [DatasetInput.from_proto(ParseDict(row, DatasetInputProto())) for row in rows]


# -- artifacts ---------------------------------------------------------------------------------
def artifact_repository(uri: str, tracking_uri: str | None = None) -> Any:
    """The artifact repository MLflow builds for `uri` (plugins included)
    (``mlflow.store.artifact.artifact_repository_registry.get_artifact_repository``; it takes
    ``tracking_uri`` in MLflow 3 only; checked on 3.17.2 and 2.22.5)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if tracking_uri is None:
        return get_artifact_repository(uri)
    try:
        return get_artifact_repository(uri, tracking_uri=tracking_uri)
    except TypeError:  # MLflow 2 takes only the URI
        return get_artifact_repository(uri)


def resolve_mlflow_artifacts_uri(uri: str, tracking_uri: str) -> str:
    """An ``mlflow-artifacts:`` URI made absolute against an HTTP tracking server, as MLflow's
    repository resolves it (``MlflowArtifactsRepository.resolve_uri``; checked on 3.17.2 and
    2.22.5)."""
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    return MlflowArtifactsRepository.resolve_uri(uri, tracking_uri)
