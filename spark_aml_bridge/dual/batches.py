"""Spooled operations grouped into mirror calls: consecutive metric/param/tag writes of a run
merged into ``log_batch`` calls within MLflow's limits (1000 metrics, 100 params+tags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spark_aml_bridge.dual.spool import Op

MAX_METRICS = 1000
MAX_PARAMS_TAGS = 100
MAX_BATCH_BYTES = 800_000


@dataclass
class Group:
    """Operations applied by one mirror call."""

    kind: str
    run: str | None
    ops: list[Op]
    metrics: list[list[Any]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    size: int = 0

    def fits(self, op: Op) -> bool:
        payload = op.payload
        metrics = len(self.metrics) + len(payload.get("m", ()))
        params_tags = (
            len(self.params)
            + len(self.tags)
            + len(payload.get("p", ()))
            + len(payload.get("t", ()))
        )
        size = self.size + _estimate(payload)
        return (
            metrics <= MAX_METRICS
            and params_tags <= MAX_PARAMS_TAGS
            and metrics + params_tags <= MAX_METRICS
            and size <= MAX_BATCH_BYTES
        )

    def add(self, op: Op) -> None:
        self.ops.append(op)
        payload = op.payload
        self.metrics.extend(payload.get("m", ()))
        self.params.update({k: v for k, v in payload.get("p", ())})
        self.tags.update({k: v for k, v in payload.get("t", ())})
        self.size += _estimate(payload)


def _estimate(payload: dict[str, Any]) -> int:
    size = 60 * len(payload.get("m", ()))
    for key in ("m", "p", "t"):
        for row in payload.get(key, ()):
            size += len(str(row[0])) + (len(str(row[1])) if key != "m" else 0)
    return size


def plan(ops: list[Op]) -> list[Group]:
    """Merge consecutive metric/param/tag writes per run; everything else is its own group.

    A non-batch operation first closes every open batch, so the order between runs is kept for
    everything that can depend on another run (creates, parents, inputs, models).
    """
    groups: list[Group] = []
    open_batches: dict[str | None, Group] = {}
    for op in ops:
        if op.kind != "batch":
            open_batches.clear()
            groups.append(Group(op.kind, op.run, [op]))
            continue
        group = open_batches.get(op.run)
        if group is None or not group.fits(op):
            group = Group("batch", op.run, [])
            groups.append(group)
            open_batches[op.run] = group
        group.add(op)
    return groups
