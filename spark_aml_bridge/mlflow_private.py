"""The MLflow private APIs this package reaches, in one place, each use explained.

Each has a public fallback, so a future MLflow without it degrades instead of breaking.
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
