"""What a spooled operation holds: MLflow entities as compact JSON, and back.

Metrics are lists ``[key, value, timestamp, step]`` (plus ``model_id, dataset_name,
dataset_digest`` on MLflow 3 when set) so a 1000-metric batch costs well under a millisecond.
"""

from __future__ import annotations

import math
from typing import Any


def metrics_out(metrics: Any) -> list[list[Any]]:
    rows = []
    for m in metrics or ():
        row = [m.key, float(m.value), int(m.timestamp), int(m.step or 0)]
        model_id = getattr(m, "model_id", None)
        dataset_name = getattr(m, "dataset_name", None)
        dataset_digest = getattr(m, "dataset_digest", None)
        if model_id or dataset_name or dataset_digest:
            row += [model_id, dataset_name, dataset_digest]
        rows.append(row)
    return rows


def metrics_in(rows: list[list[Any]]) -> list[Any]:
    from mlflow.entities import Metric

    out = []
    for row in rows:
        if len(row) > 4:
            out.append(
                Metric(row[0], row[1], row[2], row[3], model_id=row[4], dataset_name=row[5],
                       dataset_digest=row[6])
            )  # fmt: skip
        else:
            out.append(Metric(row[0], row[1], row[2], row[3]))
    return out


def kv_out(items: Any) -> list[list[str]]:
    return [[i.key, str(i.value)] for i in items or ()]


def params_in(rows: list[list[str]]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in rows]


def tags_in(rows: list[list[str]]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in rows]


def datasets_out(datasets: Any) -> list[dict[str, Any]]:
    from google.protobuf.json_format import MessageToDict

    return [MessageToDict(d.to_proto(), preserving_proto_field_name=True) for d in datasets or ()]


def datasets_in(rows: list[dict[str, Any]]) -> list[Any]:
    from spark_aml_bridge.mlflow_private import dataset_inputs_from_dicts

    return dataset_inputs_from_dicts(rows)


def model_inputs_in(ids: list[str]) -> list[Any]:
    from mlflow.entities import LoggedModelInput

    return [LoggedModelInput(model_id) for model_id in ids]


def model_outputs_in(rows: list[list[Any]]) -> list[Any]:
    from mlflow.entities import LoggedModelOutput

    return [LoggedModelOutput(model_id, step) for model_id, step in rows]


def metric_key(key: str, value: float, timestamp: int, step: int) -> tuple[str, str, int, int]:
    """Identity of a metric point for de-duplication: (key, step, timestamp, value)."""
    return (key, _value_text(value), int(timestamp), int(step or 0))


def _value_text(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "nan"
    return repr(value)
