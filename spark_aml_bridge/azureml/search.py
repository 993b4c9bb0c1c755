"""Run searches Azure ML refuses, answered with MLflow's own semantics.

Azure ML documents (how-to-track-experiments-mlflow) that run searches support AND-ed
comparisons of metrics (numeric), params (= and !=) and tags (=), and ordering by run
attributes only; LIKE/ILIKE and ordering by metrics, params or tags are refused. Such a query is
split: the clauses the workspace accepts are pushed down, every matching run is fetched (page by
page, bounded by ``search_max_client_side_runs``), and MLflow's ``SearchUtils`` filters, sorts
and pages the result exactly as an MLflow tracking server does. Page tokens of a client-side
search are MLflow's own offset tokens; a continuation reuses the fetched result for a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException

from spark_aml_bridge.mlflow_private import invalid_parameter_value, run_search_utils

FETCH_PAGE = 1000
DEFAULT_MAX_RUNS = 50_000
_CACHE_SECONDS = 60.0
_ORDERABLE_ATTRIBUTES = {"start_time", "end_time", "run_name", "run_id", "status", "created"}


@dataclass(frozen=True)
class Plan:
    """How one search is answered: all on the workspace, or pushed-down part + client side."""

    server_side: bool
    pushdown: str  # the filter the workspace evaluates (client-side plans only)


def plan_search(filter_string: str | None, order_by: list[str] | None) -> Plan:
    """Raises MLflow's own error for a filter or order_by MLflow itself rejects."""
    search_utils = run_search_utils()
    try:
        clauses = search_utils.parse_search_filter(filter_string)
        orders = [search_utils.parse_order_by_for_search_runs(o) for o in order_by or []]
    except MlflowException as exc:
        raise _as_server_error(exc) from None
    accepted = [c for c in clauses if _workspace_accepts(c)]
    ordered_ok = all(
        key_type == "attribute" and key in _ORDERABLE_ATTRIBUTES for key_type, key, _ in orders
    )
    if ordered_ok and len(accepted) == len(clauses):
        return Plan(True, filter_string or "")
    return Plan(False, " AND ".join(_render(c) for c in accepted))


def _workspace_accepts(clause: dict[str, Any]) -> bool:
    kind, comparator, value = clause["type"], clause["comparator"], clause["value"]
    if "`" in clause["key"] or (isinstance(value, str) and ("'" in value or "\\" in value)):
        return False  # not re-rendered; evaluated client side
    if kind == "metric":
        return comparator in {"=", "!=", ">", ">=", "<", "<="}
    if kind == "parameter":
        return comparator in {"=", "!="}
    if kind == "tag":
        return comparator == "="
    return False  # attributes and datasets: evaluated client side, exactly as MLflow does


def _render(clause: dict[str, Any]) -> str:
    prefix = {"metric": "metrics", "parameter": "params", "tag": "tags"}[clause["type"]]
    value = clause["value"]
    rendered = repr(float(value)) if clause["type"] == "metric" else f"'{value}'"
    return f"{prefix}.`{clause['key']}` {clause['comparator']} {rendered}"


def _as_server_error(exc: MlflowException) -> MlflowException:
    from spark_aml_bridge.azureml.run_models import server_error

    return server_error(exc.error_code, exc.message)


class ClientSideRunSearch:
    """Fetch, filter, sort and page runs for one store (a short-lived result cache)."""

    def __init__(self, fetch_page: Callable[..., tuple[list, str | None]], max_runs: int) -> None:
        self._fetch_page = fetch_page
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[float, list]] = {}
        self.requests = 0  # workspace pages fetched (for benchmarks)

    def search(
        self,
        experiment_ids: list[str],
        filter_string: str | None,
        run_view_type: Any,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
        pushdown: str,
    ) -> tuple[list, str | None]:
        search_utils = run_search_utils()
        key = (tuple(map(str, experiment_ids)), filter_string, run_view_type, tuple(order_by or ()))
        runs = self._cached(key) if page_token else None
        if runs is None:
            runs = self._fetch_all(experiment_ids, run_view_type, pushdown, filter_string)
            runs = search_utils.filter(runs, filter_string)
            runs = search_utils.sort(runs, order_by)
            with self._lock:
                now = time.monotonic()
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < _CACHE_SECONDS}
                self._cache[key] = (now, runs)
        try:
            window, token = search_utils.paginate(runs, page_token, max_results)
        except MlflowException as exc:
            raise _as_server_error(exc) from None
        return window, token.decode() if isinstance(token, bytes) else token

    def _cached(self, key: tuple) -> list | None:
        with self._lock:
            hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < _CACHE_SECONDS:
            return hit[1]
        return None

    def _fetch_all(
        self, experiment_ids: list[str], run_view_type: Any, pushdown: str, filter_string: Any
    ) -> list:
        runs: list = []
        token = None
        while True:
            page, token = self._fetch_page(
                experiment_ids, pushdown, run_view_type, FETCH_PAGE, None, token
            )
            self.requests += 1
            runs += page
            if len(runs) > self.max_runs:
                raise MlflowException(
                    f"This run search is evaluated on the client (Azure ML does not support "
                    f"'{filter_string}' or its ordering) and matches more than {self.max_runs} "
                    "runs. Narrow it with a filter the workspace evaluates (AND-ed metrics, "
                    "params = / != or tags = comparisons) or fewer experiments, or raise the "
                    "search_max_client_side_runs setting "
                    "(SPARK_AML_BRIDGE_SEARCH_MAX_CLIENT_SIDE_RUNS).",
                    error_code=invalid_parameter_value(),
                )
            if not token:
                return runs
