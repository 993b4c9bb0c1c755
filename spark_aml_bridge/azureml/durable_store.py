"""The workspace tracking store with durable writes (setting ``durable_writes``).

When on (workspace mode only): params, metrics, tags, ``log_batch``, the run's end
(``set_terminated``) and dataset inputs are committed to this process's durable spool and the call
returns at once; a background worker sends them (see ``durable_link.py``). Reads of a run
(``get_run``, ``get_metric_history``, ``search_runs``) first wait, bounded by
``durable_read_wait_seconds``, for the pending writes, so code that logs then reads sees what it
wrote. Creating a run stays synchronous (code needs its id) and keeps trying through throttling
and outages for ``create_run_budget_seconds``, honouring Retry-After, then fails with one error
naming the workspace and the cause. Everything else (artifacts, models, registry) is unchanged.

When off, every call is the plain workspace store's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from spark_aml_bridge.azureml.durable_link import DurableLink, durable_settings
from spark_aml_bridge.azureml.tracking_store import AzureMLTrackingStore
from spark_aml_bridge.dual import codec
from spark_aml_bridge.rest import is_transient_status, parsed, retry_wait, send_once

_log = logging.getLogger(__name__)
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


class DurableWorkspaceStore(AzureMLTrackingStore):
    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        super().__init__(store_uri, artifact_uri)
        self.store_uri = store_uri
        self._durable_lock = threading.Lock()
        self._durable_link: DurableLink | None = None
        self._durable_pid: int | None = None
        self._durable_failed = False

    def synchronous(self) -> Any:
        """This store without durable writes (its base class's methods), for the worker."""
        return super()

    # -- the link (spool + worker), per process -------------------------------------------------
    def durable_link(self, *, create: bool = True) -> DurableLink | None:
        """This process's link when durable writes are on, else None."""
        settings = durable_settings()
        if not settings.enabled:
            return None
        link = self._durable_link
        if link is not None and self._durable_pid == os.getpid() and not link.closed:
            return link
        if not create:
            return None
        with self._durable_lock:
            link = self._durable_link
            if link is None or self._durable_pid != os.getpid() or link.closed:
                try:
                    link = DurableLink(self, settings)
                except Exception as exc:  # noqa: BLE001 - fall back to synchronous writes
                    if not self._durable_failed:
                        _log.warning(
                            "durable writes: the spool in %s cannot be opened (%s); writes go "
                            "to the workspace synchronously",
                            settings.spool_dir,
                            exc,
                        )
                        self._durable_failed = True
                    return None
                self._durable_link, self._durable_pid = link, os.getpid()
        return link

    def _spool(self, kind: str, run_id: str, payload: dict[str, Any], n: int = 0) -> bool:
        """Commit one write to the spool; False when it must be sent synchronously instead."""
        link = self.durable_link()
        if link is None:
            return False
        try:
            link.record(kind, run_id, payload, n)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: send it now instead
            _log.warning("durable writes: could not spool a write (%s); sending it now", exc)
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the workspace has every write of this process (True) or `timeout`."""
        link = self.durable_link(create=False)
        return True if link is None else link.flush(timeout)

    def durable_status(self) -> dict[str, Any]:
        link = self.durable_link(create=False)
        return {} if link is None else link.status()

    def _wait(self, run_id: str | None) -> None:
        link = self.durable_link(create=False)
        if link is not None:
            link.wait_for_run(run_id, durable_settings().read_wait_seconds)

    # -- writes -----------------------------------------------------------------------------------
    def log_metric(self, run_id: str, metric: Any) -> None:
        if not self._spool("batch", run_id, {"m": codec.metrics_out((metric,))}, 1):
            super().log_metric(run_id, metric)

    def log_param(self, run_id: str, param: Any) -> Any:
        if not self._spool("batch", run_id, {"p": codec.kv_out((param,))}):
            return super().log_param(run_id, param)
        return None

    def set_tag(self, run_id: str, tag: Any) -> None:
        if not self._spool("batch", run_id, {"t": codec.kv_out((tag,))}):
            super().set_tag(run_id, tag)

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        metrics, params, tags = list(metrics or ()), list(params or ()), list(tags or ())
        payload: dict[str, Any] = {}
        if metrics:
            payload["m"] = codec.metrics_out(metrics)
        if params:
            payload["p"] = codec.kv_out(params)
        if tags:
            payload["t"] = codec.kv_out(tags)
        if not payload:
            return
        if not self._spool("batch", run_id, payload, len(metrics)):
            super().log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def update_run_info(self, run_id: str, run_status: Any, end_time: Any, run_name: Any) -> Any:
        from mlflow.entities import RunStatus

        status = run_status if isinstance(run_status, str) else RunStatus.to_string(run_status)
        payload = {"status": status, "end": end_time, "name": run_name, "artifacts": False}
        if not self._spool("update_run", run_id, payload):
            return super().update_run_info(run_id, run_status, end_time, run_name)
        link = self.durable_link(create=False)
        if status in _TERMINAL and link is not None:
            link.run_closed(run_id)
        return None  # MLflow's callers (set_terminated, update_run) do not use the answer

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        payload = {
            "d": codec.datasets_out(datasets),
            "models": [m.model_id for m in models or ()],
        }
        if self._spool("log_inputs", run_id, payload):
            return
        if models:
            super().log_inputs(run_id, datasets=datasets, models=models)
        else:
            super().log_inputs(run_id, datasets=datasets)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._wait(run_id)  # after the writes before it
        super().delete_tag(run_id, key)

    # -- reads: first the run's pending writes (bounded) ------------------------------------------
    def get_run(self, run_id: str) -> Any:
        self._wait(run_id)
        return super().get_run(run_id)

    def get_metric_history(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        self._wait(run_id)
        return super().get_metric_history(run_id, *args, **kwargs)

    def search_runs(self, *args: Any, **kwargs: Any) -> Any:
        self._wait(None)
        return super().search_runs(*args, **kwargs)

    # -- run creation: synchronous, within a budget -----------------------------------------------
    def _find_created(self, experiment_id: str, key: str) -> Any:
        from mlflow.entities import ViewType

        from spark_aml_bridge.azureml.tracking_store import CREATE_KEY_TAG

        found = super().search_runs(  # not this class's: no waiting for pending writes here
            [str(experiment_id)],
            f"tags.`{CREATE_KEY_TAG}` = '{key}'",
            ViewType.ALL,
            max_results=1,
        )
        return found[0] if found else None

    def _post_once_retrying(
        self, endpoint: str, method: str, body: dict, find_existing: Any
    ) -> Any:
        """With durable writes: keep trying for create_run_budget_seconds (Retry-After honoured,
        else backoff), never blindly (a retry first looks for the first try's result)."""
        settings = durable_settings()
        if not settings.enabled:
            return super()._post_once_retrying(endpoint, method, body, find_existing)
        from mlflow.exceptions import MlflowException

        from spark_aml_bridge.errors import BridgeError

        budget = settings.create_run_budget_seconds
        deadline = time.monotonic() + budget
        backoff, attempt, cause = 0.5, 0, ""
        while True:
            if attempt:
                try:
                    existing = find_existing()
                except MlflowException:
                    existing = None  # still unreachable: try the create again below
                if existing is not None:
                    _log.info("a retried create had already been applied; not creating twice")
                    return existing
            attempt += 1
            try:
                response = send_once(self.get_host_creds(), endpoint, method, json_body=body)
            except MlflowException as exc:
                if isinstance(exc.__context__, BridgeError):
                    raise  # a refusal (credentials): waiting cannot grant access
                cause, wait = _first_line(exc), backoff
            else:
                if not is_transient_status(response):
                    return parsed(response, endpoint)
                cause = f"HTTP {response.status_code} ({_service_text(response)})"
                wait = retry_wait(response, backoff)
            if time.monotonic() + wait > deadline:
                raise self._unreachable(endpoint, budget, attempt, cause)
            time.sleep(wait)
            backoff = min(backoff * 2, 10.0)

    def _unreachable(self, endpoint: str, budget: float, attempts: int, cause: str) -> Exception:
        from spark_aml_bridge.errors import WorkspaceUnreachableError

        address = self.workspace_session.address
        what = "create a run" if "runs/create" in endpoint else f"call {endpoint}"
        return WorkspaceUnreachableError(
            f"could not {what} in workspace '{address.workspace_name}' ({address.host}) within "
            f"{budget:.0f} s ({attempts} attempts); last answer: {cause}",
            "check the workspace's health and your network path to it, then run again; "
            "create_run_budget_seconds (SPARK_AML_BRIDGE_CREATE_RUN_BUDGET_SECONDS) sets how "
            "long to keep trying",
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _service_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:200]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return json.dumps(body)[:200]
