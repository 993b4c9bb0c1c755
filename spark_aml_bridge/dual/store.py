"""The dual tracking store: the primary answers every call; every write it accepted is spooled
for the mirror.

MLflow builds it for ``dual:?primary=…&mirror=…`` URIs (``mlflow.tracking_store`` entry point).
User code sees the primary's ids and reads the primary. A write first goes to the primary
exactly as without dual tracking (its errors are the user's errors); then one row is committed to
the spool and the call returns. The mirror is written by a background worker (``worker.py``), or,
with ``dual_strict``, synchronously, raising when the mirror fails.

MLflow's async logging keeps working: this store keeps its own async queue (AbstractStore's),
whose threads call this store's ``log_batch``, which fans out as above.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from mlflow.store.tracking.abstract_store import AbstractStore

from spark_aml_bridge.dual import codec
from spark_aml_bridge.dual.sides import build_store
from spark_aml_bridge.dual.uri import ORIGIN_TAG, dual_options, parse_dual_uri

_log = logging.getLogger(__name__)
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


def _status_text(status: Any) -> str:
    from mlflow.entities import RunStatus

    return status if isinstance(status, str) else RunStatus.to_string(status)


class DualTrackingStore(AbstractStore):
    """Primary store plus a spooled mirror; see the module docstring."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        from spark_aml_bridge.dual.settings import DualSettings

        self.store_uri = store_uri
        self.primary_uri, self.mirror_uri = parse_dual_uri(store_uri)
        self.settings = DualSettings.current().with_options(dual_options(store_uri))
        self.primary = build_store(self.primary_uri)
        self._open_workspace_session()
        super().__init__()
        self._link_lock = threading.Lock()
        self._link: Any = None
        self._link_pid: int | None = None
        self._link_failed = False
        self.link  # noqa: B018 - open the spool now, so its origin tag is on the first run

    def _open_workspace_session(self) -> None:
        """Open the workspace session of an ``azureml`` mirror now, as the workspace store
        would at first use (so new runs get the platform's context tags, on executors too); a
        failure is only logged: the worker keeps trying, training goes on."""
        if not self.mirror_uri.startswith("azureml:"):
            return
        try:
            from spark_aml_bridge.session import session_for_store_uri

            session_for_store_uri(self.mirror_uri)
        except Exception as exc:  # noqa: BLE001 - the mirror must not fail the primary
            _log.warning(
                "dual tracking: the workspace (mirror) is not reachable yet (%s); writes are "
                "spooled and sent once it is",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )

    # -- the mirror link (spool + worker), rebuilt after a fork -------------------------------
    @property
    def link(self) -> Any:
        pid = os.getpid()
        link = self._link
        if self._link_pid == pid and (link.closed is False if link else self._link_failed):
            return link  # the live link; or None when this process could not open a spool
        with self._link_lock:
            if self._link is None or self._link_pid != pid or self._link.closed:
                from spark_aml_bridge.dual.worker import MirrorLink

                try:
                    self._link = MirrorLink(self)
                    self._link_failed = False
                except Exception as exc:  # noqa: BLE001 - never break training for the mirror
                    if self.settings.strict:
                        raise
                    if not self._link_failed:
                        _log.warning(
                            "dual tracking: the mirror's spool could not be opened (%s); this "
                            "process tracks to the primary only. `spark-aml-bridge mirror "
                            "backfill` copies its runs later.",
                            exc,
                        )
                    self._link_failed = True
                    self._link = None
                self._link_pid = pid
        return self._link

    def _record(
        self, kind: str, run: str | None, payload: dict[str, Any], n: int = 0, bulky: bool = False
    ) -> None:
        link = self.link
        if link is not None:
            link.record(kind, run, payload, n, bulky)

    def flush_mirror(self, timeout: float | None = None) -> bool:
        """Wait until the mirror has every spooled write (or `timeout`); True when it has."""
        link = self.link
        if link is None:
            # No spool (e.g. a read-only spool directory): the mirror got none of the writes.
            return not self._link_failed
        return link.flush(timeout)

    def mirror_status(self) -> dict[str, Any]:
        link = self.link
        return {} if link is None else link.status()

    # -- artifact URIs the primary gives relative to its tracking URI ------------------------
    def _fix(self, obj: Any) -> Any:
        from spark_aml_bridge.dual.artifacts import resolve_artifact_uri

        if obj is None:
            return obj
        if isinstance(obj, list):
            for item in obj:
                self._fix(item)
            return obj
        info = getattr(obj, "info", None)
        target = info if info is not None and hasattr(info, "_artifact_uri") else obj
        for attr in ("_artifact_uri", "_artifact_location"):
            value = getattr(target, attr, None)
            if isinstance(value, str):
                setattr(target, attr, resolve_artifact_uri(value, self.primary_uri))
        return obj

    # -- reads: the primary's answers -----------------------------------------------------------
    def get_run(self, run_id: str) -> Any:
        return self._fix(self.primary.get_run(run_id))

    def search_runs(self, *args: Any, **kwargs: Any) -> Any:
        return self._fix(self.primary.search_runs(*args, **kwargs))

    def _search_runs(self, *args: Any, **kwargs: Any) -> Any:
        runs, token = self.primary._search_runs(*args, **kwargs)
        return self._fix(runs), token

    def get_experiment(self, experiment_id: str) -> Any:
        return self._fix(self.primary.get_experiment(experiment_id))

    def get_experiment_by_name(self, experiment_name: str) -> Any:
        return self._fix(self.primary.get_experiment_by_name(experiment_name))

    def search_experiments(self, *args: Any, **kwargs: Any) -> Any:
        return self._fix(self.primary.search_experiments(*args, **kwargs))

    def get_logged_model(self, *args: Any, **kwargs: Any) -> Any:
        return self._fix(self.primary.get_logged_model(*args, **kwargs))

    def search_logged_models(self, *args: Any, **kwargs: Any) -> Any:
        return self._fix(self.primary.search_logged_models(*args, **kwargs))

    def get_metric_history(self, *args: Any, **kwargs: Any) -> Any:
        return self.primary.get_metric_history(*args, **kwargs)

    # -- experiments ----------------------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: Any = None, tags: Any = None) -> str:
        experiment_id = self.primary.create_experiment(name, artifact_location, tags)
        self._record(
            "create_experiment",
            None,
            {"e": str(experiment_id), "name": name, "t": codec.kv_out(tags)},
        )
        return experiment_id

    def delete_experiment(self, experiment_id: str) -> None:
        self.primary.delete_experiment(experiment_id)
        self._record("delete_experiment", None, {"e": str(experiment_id)})

    def restore_experiment(self, experiment_id: str) -> None:
        self.primary.restore_experiment(experiment_id)
        self._record("restore_experiment", None, {"e": str(experiment_id)})

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.primary.rename_experiment(experiment_id, new_name)
        self._record("rename_experiment", None, {"e": str(experiment_id), "name": new_name})

    def set_experiment_tag(self, experiment_id: str, tag: Any) -> None:
        self.primary.set_experiment_tag(experiment_id, tag)
        self._record(
            "experiment_tag", None, {"e": str(experiment_id), "k": tag.key, "v": str(tag.value)}
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.primary.delete_experiment_tag(experiment_id, key)
        self._record("delete_experiment_tag", None, {"e": str(experiment_id), "k": key})

    # -- runs -----------------------------------------------------------------------------------
    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: Any
    ) -> Any:
        from mlflow.entities import RunTag

        link = self.link
        tags = list(tags or [])
        if link is not None:
            tags.append(RunTag(ORIGIN_TAG, link.origin))
        run = self.primary.create_run(experiment_id, user_id, start_time, tags, run_name)
        run_id = run.info.run_id
        if link is not None:
            link.run_opened(run_id)
        self._record(
            "create_run",
            run_id,
            {
                "e": str(run.info.experiment_id),
                "u": run.info.user_id,
                "s": run.info.start_time,
                "n": run.info.run_name,
                "t": [[k, v] for k, v in run.data.tags.items()],
            },
        )
        return self._fix(run)

    def update_run_info(self, run_id: str, run_status: Any, end_time: Any, run_name: Any) -> Any:
        info = self.primary.update_run_info(run_id, run_status, end_time, run_name)
        status = _status_text(run_status)
        terminal = status in _TERMINAL
        self._record(
            "update_run",
            run_id,
            {"status": status, "end": end_time, "name": run_name, "artifacts": terminal},
        )
        if terminal and self.link is not None:
            self.link.run_closed(run_id)
        return self._fix(info)

    def delete_run(self, run_id: str) -> None:
        self.primary.delete_run(run_id)
        self._record("delete_run", run_id, {})

    def restore_run(self, run_id: str) -> None:
        self.primary.restore_run(run_id)
        self._record("restore_run", run_id, {})

    def log_metric(self, run_id: str, metric: Any) -> None:
        self.primary.log_metric(run_id, metric)
        self._record("batch", run_id, {"m": codec.metrics_out((metric,))}, 1, True)

    def log_param(self, run_id: str, param: Any) -> None:
        self.primary.log_param(run_id, param)
        self._record("batch", run_id, {"p": codec.kv_out((param,))})

    def set_tag(self, run_id: str, tag: Any) -> None:
        self.primary.set_tag(run_id, tag)
        self._record("batch", run_id, {"t": codec.kv_out((tag,))})

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        metrics, params, tags = list(metrics or ()), list(params or ()), list(tags or ())
        self.primary.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        payload: dict[str, Any] = {}
        if metrics:
            payload["m"] = codec.metrics_out(metrics)
        if params:
            payload["p"] = codec.kv_out(params)
        if tags:
            payload["t"] = codec.kv_out(tags)
        if payload:
            self._record("batch", run_id, payload, len(metrics), bool(metrics))

    def delete_tag(self, run_id: str, key: str) -> None:
        self.primary.delete_tag(run_id, key)
        self._record("delete_tag", run_id, {"k": key})

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        if models:
            self.primary.log_inputs(run_id, datasets=datasets, models=models)
        else:
            self.primary.log_inputs(run_id, datasets=datasets)
        self._record(
            "log_inputs",
            run_id,
            {"d": codec.datasets_out(datasets), "models": [m.model_id for m in models or ()]},
        )

    def log_outputs(self, run_id: str, models: Any) -> None:
        self.primary.log_outputs(run_id, models)
        self._record("log_outputs", run_id, {"o": [[m.model_id, m.step] for m in models or ()]})

    def record_logged_model(self, run_id: str, mlflow_model: Any) -> None:
        self.primary.record_logged_model(run_id, mlflow_model)
        self._record("record_model", run_id, {"model": mlflow_model.get_tags_dict()})

    # -- MLflow 3 logged models -----------------------------------------------------------------
    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: Any = None,
        params: Any = None,
        model_type: str | None = None,
    ) -> Any:
        model = self.primary.create_logged_model(
            experiment_id, name, source_run_id, tags, params, model_type
        )
        self._record(
            "create_model",
            source_run_id,
            {
                "id": model.model_id,
                "e": str(model.experiment_id),
                "name": model.name,
                "src": source_run_id,
                "t": codec.kv_out(tags),
                "p": codec.kv_out(params),
                "type": model_type,
            },
        )
        return self._fix(model)

    def log_logged_model_params(self, model_id: str, params: Any) -> None:
        self.primary.log_logged_model_params(model_id, params)
        self._record("model_params", None, {"id": model_id, "p": codec.kv_out(params)})

    def finalize_logged_model(self, model_id: str, status: Any) -> Any:
        model = self.primary.finalize_logged_model(model_id, status)
        text = getattr(status, "value", None) or str(status)
        self._record("finalize_model", None, {"id": model_id, "status": str(text)})
        return self._fix(model)

    def set_logged_model_tags(self, model_id: str, tags: Any) -> None:
        self.primary.set_logged_model_tags(model_id, tags)
        self._record("model_tags", None, {"id": model_id, "t": codec.kv_out(tags)})

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self.primary.delete_logged_model_tag(model_id, key)
        self._record("delete_model_tag", None, {"id": model_id, "k": key})

    def delete_logged_model(self, model_id: str) -> None:
        self.primary.delete_logged_model(model_id)
        self._record("delete_model", None, {"id": model_id})

    # -- anything else (traces, GenAI, gateway…): the primary only ------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("primary", "_link", "settings"):
            raise AttributeError(name)
        return getattr(self.primary, name)


def _delegate(name: str) -> Any:
    def method(self: DualTrackingStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.primary, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"The primary's ``{name}`` (not mirrored)."
    return method


# AbstractStore defines many methods (raising NotImplementedError by default), so __getattr__
# never sees them: forward every one this class does not define to the primary.
for _name, _value in list(vars(AbstractStore).items()) + [
    (n, v) for base in AbstractStore.__mro__[1:] for n, v in vars(base).items()
]:
    if (
        callable(_value)
        and not _name.startswith("__")
        and _name not in vars(DualTrackingStore)
        and _name
        not in (
            "log_batch_async",
            "log_metric_async",
            "log_param_async",
            "set_tag_async",
            "end_async_logging",
            "flush_async_logging",
            "shut_down_async_logging",
            "search_runs",
        )
        and not isinstance(_value, (staticmethod, classmethod, property))
    ):
        setattr(DualTrackingStore, _name, _delegate(_name))
