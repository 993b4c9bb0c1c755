"""MLflow requests Azure ML documents as unsupported, rejected the way a stricter server would.

Documented (how-to-track-experiments-mlflow): no LIKE/ILIKE or OR in run filters, no ordering
runs by metrics, params or tags, no experiment renaming. Catching these locally keeps code that
passes against the emulator from failing on the real service.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from werkzeug.wrappers import Response

from spark_aml_bridge.emulator.responses import mlflow_error

_RUNS_SEARCH = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow/runs/search$")
_EXPERIMENT_UPDATE = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow/experiments/update$")
# Quoted strings, backticked identifiers and the key after `metrics.` etc. may contain anything;
# only keywords outside them matter.
_NOT_KEYWORDS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|\.\w+")
_UNSUPPORTED_FILTER = re.compile(r"\b(ILIKE|LIKE|OR)\b", re.IGNORECASE)
_UNSUPPORTED_ORDER = re.compile(r"^\s*`?(metrics?|params?|parameters?|tags?)`?\s*\.", re.IGNORECASE)


def _reject(message: str) -> Response:
    return mlflow_error(
        400, "INVALID_PARAMETER_VALUE", f"{message} Azure Machine Learning does not support it."
    )


def _read_json_body(environ: dict[str, Any]) -> Any:
    """Read the JSON body and put an identical stream back for the MLflow app."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(data)
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}  # MLflow itself reports malformed JSON


def check_search_filter(filter_string: str) -> str | None:
    """The unsupported keyword in a runs/search filter, or None."""
    match = _UNSUPPORTED_FILTER.search(_NOT_KEYWORDS.sub(" ", filter_string or ""))
    return match.group(1).upper() if match else None


def check_order_by(order_by: list[str]) -> str | None:
    """The first order_by clause that sorts by a metric, param or tag, or None."""
    for clause in order_by or []:
        if isinstance(clause, str) and _UNSUPPORTED_ORDER.match(clause):
            return clause
    return None


def check_request(method: str, route: str, environ: dict[str, Any]) -> Response | None:
    """A 400 response if the request uses a feature AML lacks; None to let it through."""
    if method != "POST":
        return None
    if _RUNS_SEARCH.match(route):
        body = _read_json_body(environ)
        if not isinstance(body, dict):
            return None
        keyword = check_search_filter(str(body.get("filter") or ""))
        if keyword:
            return _reject(
                f"Filtering runs with {keyword} ('{body.get('filter')}') is not supported."
            )
        clause = check_order_by(body.get("order_by") or [])
        if clause:
            return _reject(
                f"Ordering runs by metrics, params or tags ('{clause}') is not supported; "
                "order by run attributes such as start_time instead."
            )
    elif _EXPERIMENT_UPDATE.match(route):
        body = _read_json_body(environ)
        if isinstance(body, dict) and body.get("new_name"):
            return _reject("Renaming experiments is not supported.")
    return None
