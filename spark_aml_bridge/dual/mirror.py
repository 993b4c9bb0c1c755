"""Applying spooled operations to the mirror, finding or making each object's mirror.

Ids cannot be chosen by an MLflow client, so every primary experiment, run and logged model has
its own mirror id. Each mirror object carries a ``spark_aml_bridge.primary.*`` tag with its
primary id (and each primary object, once mirrored, a ``spark_aml_bridge.mirror.*`` tag): the
map can always be rebuilt from the tags; ``idmap.IdMap`` only caches it. Creating a mirror
object first looks for one with that tag, so a create that is replayed (after a crash, or a lost
response) never makes a second one.

Operations are applied in spool order. Consecutive metric/param/tag writes are merged per run
into ``log_batch`` calls within MLflow's limits (1000 metrics, 100 params+tags). A batch that was
sent before (its rows carry ``attempts > 0``) is first compared with the mirror's metric history,
and points already there — same (key, step, timestamp, value) — are not sent again.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_aml_bridge.dual import codec
from spark_aml_bridge.dual.failures import (
    Pending,
    ignore_missing,
    is_transient,
    short_error,
)
from spark_aml_bridge.dual.idmap import IdMap
from spark_aml_bridge.dual.names import NameRule, disambiguated
from spark_aml_bridge.dual.spool import PREFIX, SUFFIX, Op, Spool, owner_alive
from spark_aml_bridge.dual.uri import (
    MIRROR_EXPERIMENT_TAG,
    MIRROR_MODEL_TAG,
    MIRROR_RUN_TAG,
    ORIGIN_TAG,
    PRIMARY_EXPERIMENT_TAG,
    PRIMARY_MODEL_TAG,
    PRIMARY_RUN_TAG,
    is_bookkeeping,
    is_databricks_uri,
)
from spark_aml_bridge.rest import call_once

_log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
HISTORY_TAG = "mlflow.log-model.history"
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


class Mirror:
    """Applies operations to the mirror store; owns the primary→mirror id map."""

    def __init__(
        self,
        primary: Any,
        mirror: Any,
        *,
        primary_uri: str,
        mirror_uri: str,
        names: NameRule | None = None,
        spool: Spool | None = None,
        spool_dir: Path | None = None,
        adopt_after: float = 600.0,
        replaying: bool = False,
    ) -> None:
        self.primary = primary
        self.store = mirror
        self.primary_uri = primary_uri
        self.mirror_uri = mirror_uri
        self.names = names or NameRule()
        self.spool = spool
        self.spool_dir = spool_dir
        self.origin = spool.id if spool is not None else None
        self.adopt_after = adopt_after
        self.replaying = replaying
        self.mirror_is_databricks = is_databricks_uri(mirror_uri)
        self.ids = IdMap(spool)
        self._fast_batch: bool | None = None
        self._registry: Any = None

    # -- id map ---------------------------------------------------------------------------------
    def _tag_primary(self, what: str, call: Callable[[], Any]) -> None:
        """Record a mirror id on the primary object (best effort: the mirror side has it too)."""
        try:
            call()
        except Exception as exc:  # noqa: BLE001
            _log.debug("could not record the mirror id on primary %s: %s", what, exc)

    def experiment_id(
        self, primary_id: str, *, name: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """The mirror experiment of a primary experiment, made (or adopted by name) if needed."""
        from mlflow.entities import ExperimentTag
        from mlflow.exceptions import MlflowException

        primary_id = str(primary_id)
        found = self.ids.get("experiment", primary_id)
        if found is not None:
            return found
        lifecycle = "active"
        if name is None or tags is None:
            experiment = self.primary.get_experiment(primary_id)
            name, tags = experiment.name, dict(experiment.tags)
            lifecycle = experiment.lifecycle_stage
        target = self.names.mirror_name(name, mirror_is_databricks=self.mirror_is_databricks)
        mirror_id = None
        for candidate in (target, disambiguated(target, primary_id)):
            existing = self.store.get_experiment_by_name(candidate)
            if existing is None:
                copied = [
                    ExperimentTag(k, v) for k, v in (tags or {}).items() if not is_bookkeeping(k)
                ]
                copied.append(ExperimentTag(PRIMARY_EXPERIMENT_TAG, primary_id))
                try:
                    mirror_id = str(self.store.create_experiment(candidate, None, copied))
                    break
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    existing = self.store.get_experiment_by_name(candidate)
                    if existing is None:
                        raise
            owner = existing.tags.get(PRIMARY_EXPERIMENT_TAG)
            if owner not in (None, primary_id):
                continue  # the name belongs to another primary experiment
            mirror_id = str(existing.experiment_id)
            if owner is None:
                self.store.set_experiment_tag(
                    mirror_id, ExperimentTag(PRIMARY_EXPERIMENT_TAG, primary_id)
                )
            if existing.lifecycle_stage == "deleted" and lifecycle != "deleted":
                self.store.restore_experiment(mirror_id)
            break
        if mirror_id is None:  # pragma: no cover - both names taken by other experiments
            raise MlflowException(
                f"no mirror experiment name is free for '{name}' ({target})",
                error_code="RESOURCE_ALREADY_EXISTS",
            )
        self.ids.put("experiment", primary_id, mirror_id)
        self._tag_primary(
            f"experiment {primary_id}",
            lambda: self.primary.set_experiment_tag(
                primary_id, ExperimentTag(MIRROR_EXPERIMENT_TAG, mirror_id)
            ),
        )
        return mirror_id

    def lookup_run(self, primary_id: str, experiment_id: str | None = None) -> str | None:
        """The mirror run of a primary run, if there is one (cache, then the mirror's tags)."""
        from mlflow.entities import ViewType

        found = self.ids.get("run", primary_id)
        if found is not None:
            return found
        if experiment_id is None:
            experiment_id = self.primary.get_run(primary_id).info.experiment_id
        mirror_experiment = self.experiment_id(experiment_id)
        runs = self.store.search_runs(
            [mirror_experiment],
            f"tags.`{PRIMARY_RUN_TAG}` = '{primary_id}'",
            ViewType.ALL,
            max_results=10,
        )
        if not runs:
            return None
        if len(runs) > 1:
            _log.warning(
                "primary run %s has %d mirror runs; using the oldest", primary_id, len(runs)
            )
        best = min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
        self.ids.put("run", primary_id, best.info.run_id)
        return best.info.run_id

    def _may_create(self, origin: str | None, age: float) -> bool:
        """Whether this process may create the mirror of a run whose origin tag is `origin`."""
        if origin is None or origin == self.origin:
            return True  # made outside dual mode (adopt it), or by this very spool
        if self.spool_dir is not None:
            local = self.spool_dir / f"{PREFIX}{origin}{SUFFIX}"
            if local.exists():
                return not owner_alive(local)  # its owner mirrors it; once dead, we may
            if self.replaying:
                return True  # finished or on another machine: nobody else will
        return age > self.adopt_after  # on another machine: give its owner time first

    def run_id(
        self,
        primary_id: str,
        *,
        age: float = 0.0,
        created: dict[str, Any] | None = None,
        force: bool = False,
    ) -> str:
        """The mirror run of a primary run; creates it when this process may (see _may_create)."""
        found = self.ids.get("run", primary_id)
        if found is not None:
            return found
        if created is not None:
            experiment_id = created["e"]
            tags = dict(created["t"])
            start_time, user_id, run_name = created["s"], created["u"], created["n"]
        else:
            run = self.primary.get_run(primary_id)
            experiment_id = run.info.experiment_id
            tags = dict(run.data.tags)
            start_time, user_id, run_name = run.info.start_time, run.info.user_id, run.info.run_name
        found = self.lookup_run(primary_id, experiment_id)
        if found is not None:
            return found
        origin = tags.get(ORIGIN_TAG)
        if not (force or created is not None or self._may_create(origin, age)):
            raise Pending(f"primary run {primary_id} is mirrored by spool {origin}")
        return self._create_run(primary_id, experiment_id, tags, start_time, user_id, run_name, age)

    def _create_run(
        self,
        primary_id: str,
        experiment_id: str,
        tags: dict[str, str],
        start_time: int,
        user_id: str,
        run_name: str | None,
        age: float,
    ) -> str:
        from mlflow.entities import RunTag

        mirror_experiment = self.experiment_id(experiment_id)
        translated = self.translate_tags(tags, age=age)
        translated[PRIMARY_RUN_TAG] = primary_id
        run = self.store.create_run(
            mirror_experiment,
            user_id or "",
            start_time,
            [RunTag(k, v) for k, v in translated.items()],
            run_name,
        )
        mirror_id = run.info.run_id
        self.ids.put("run", primary_id, mirror_id)
        self._tag_primary(
            f"run {primary_id}",
            lambda: self.primary.set_tag(primary_id, RunTag(MIRROR_RUN_TAG, mirror_id)),
        )
        return mirror_id

    def translate_tags(
        self,
        tags: dict[str, str],
        *,
        age: float = 0.0,
        parent: Callable[[str], str | None] | None = None,
    ) -> dict[str, str]:
        """Primary run tags as the mirror holds them: ids translated, bookkeeping dropped."""
        out = {}
        for key, value in tags.items():
            if is_bookkeeping(key):
                continue
            if key == PARENT_TAG and value:
                value = (parent or (lambda v: self.run_id(v, age=age)))(value) or value
            elif key == HISTORY_TAG and value:
                value = self._translate_history(value)
            out[key] = value
        return out

    def _translate_history(self, value: str) -> str:
        try:
            entries = json.loads(value)
        except ValueError:
            return value
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("run_id"):
                mirror_id = self.ids.get("run", entry["run_id"])
                if mirror_id is not None:
                    entry["run_id"] = mirror_id
        return json.dumps(entries)

    def model_id(
        self, primary_id: str, *, age: float = 0.0, created: dict[str, Any] | None = None
    ) -> str:
        """The mirror logged model of a primary one (MLflow 3)."""
        from mlflow.entities import LoggedModelParameter, LoggedModelTag

        found = self.ids.get("model", primary_id)
        if found is not None:
            return found
        referenced = created is None  # a reference, not this model's own create operation
        if created is None:
            model = self.primary.get_logged_model(primary_id, allow_deleted=True)
            created = {
                "e": model.experiment_id,
                "name": model.name,
                "src": model.source_run_id,
                "t": list(model.tags.items()),
                "p": list(model.params.items()),
                "type": model.model_type,
            }
        mirror_experiment = self.experiment_id(created["e"])
        found = self.find_model(mirror_experiment, primary_id)
        if found is None and referenced and age < self.adopt_after and not self.replaying:
            # Its create is in this spool (applied earlier, in order) or in another process's.
            raise Pending(f"logged model {primary_id} is not on the mirror yet")
        if found is None:
            source = self.run_id(created["src"], age=age) if created.get("src") else None
            tags = [LoggedModelTag(k, v) for k, v in created["t"] if not is_bookkeeping(k)]
            tags.append(LoggedModelTag(PRIMARY_MODEL_TAG, primary_id))
            params = [LoggedModelParameter(k, v) for k, v in created["p"]]
            model = self.store.create_logged_model(
                mirror_experiment, created["name"], source, tags, params or None, created["type"]
            )
            found = model.model_id
            self._tag_primary(
                f"logged model {primary_id}",
                lambda: self.primary.set_logged_model_tags(
                    primary_id, [LoggedModelTag(MIRROR_MODEL_TAG, found)]
                ),
            )
        self.ids.put("model", primary_id, found)
        return found

    def find_model(self, mirror_experiment: str, primary_id: str) -> str | None:
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.store.search_logged_models(
                experiment_ids=[mirror_experiment], max_results=100, page_token=token
            )
            for model in page:
                if model.tags.get(PRIMARY_MODEL_TAG) == primary_id:
                    return model.model_id
            token = page.token
            if not token:
                break
        hidden = getattr(self.store, "_models_experiment", None)
        native = getattr(self.store, "_native_logged_models", None)
        if callable(hidden) and callable(native) and not native():
            # Models mirrored by earlier versions are runs of the hidden experiment whose
            # bookkeeping tags LoggedModel.tags hides: look at those runs directly.
            from spark_aml_bridge.azureml.logged_models import MODELS_EXPERIMENT, model_id_for

            experiment = self.store.get_experiment_by_name(MODELS_EXPERIMENT)
            runs = (
                self.store.search_runs(
                    [experiment.experiment_id],
                    f"tags.`{PRIMARY_MODEL_TAG}` = '{primary_id}'",
                    ViewType.ALL,
                    max_results=5,
                )
                if experiment is not None
                else []
            )
            return model_id_for(runs[0].info.run_id) if runs else None
        return None

    def registry(self) -> Any:
        """The mirror's model registry store (built on first use)."""
        if self._registry is None:
            from spark_aml_bridge.dual.sides import build_registry_store

            self._registry = build_registry_store(self.mirror_uri)
        return self._registry

    def native_logged_models(self) -> bool:
        native = getattr(self.store, "_native_logged_models", None)
        return native() if callable(native) else True

    # -- applying operations --------------------------------------------------------------------
    def apply(self, ops: list[Op], *, strict: bool = False) -> int:
        """Apply `ops` in order; acks each group as it lands. Returns the metrics sent.

        A transient failure stops here (raised; the rest stays in the spool). A permanent one
        is isolated to its operation, which goes to the dead letters; in strict mode it is
        raised after that.
        """
        sent = 0
        for group in plan(ops):
            sent += self._apply_group(group, strict=strict)
        return sent

    def _apply_group(self, group: Group, *, strict: bool) -> int:
        retried = any(op.attempts > 0 for op in group.ops)
        if self.spool is not None:
            self.spool.attempted(group.ops)
        try:
            sent = self._apply(group, retried)
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(group.ops) > 1:
                return sum(
                    self._apply_group(plan([op])[0], strict=strict) for op in list(group.ops)
                )
            message = short_error(exc)
            _log.warning(
                "the mirror refused a %s for primary %s for good (%s); kept in the spool's dead "
                "letters",
                group.kind,
                group.run or group.ops[0].payload.get("id") or group.ops[0].payload.get("e"),
                message,
            )
            if self.spool is not None:
                self.spool.dead_letter(group.ops[0], message)
            if strict:
                raise
            return 0
        if self.spool is not None:
            self.spool.ack(group.ops)
            self.spool.counters["metrics_sent"] += sent
        return sent

    def _apply(self, group: Group, retried: bool) -> int:
        op = group.ops[0]
        payload = op.payload
        age = time.time() - op.created
        kind = group.kind
        if kind == "batch":
            return self._apply_batch(group, retried, age)
        if kind == "create_experiment":
            self.experiment_id(payload["e"], name=payload["name"], tags=dict(payload["t"]))
        elif kind in ("delete_experiment", "restore_experiment"):
            mirror_id = self.experiment_id(payload["e"])
            stage = self.store.get_experiment(mirror_id).lifecycle_stage
            if kind == "delete_experiment" and stage != "deleted":
                self.store.delete_experiment(mirror_id)
            elif kind == "restore_experiment" and stage == "deleted":
                self.store.restore_experiment(mirror_id)
        elif kind == "rename_experiment":
            mirror_id = self.experiment_id(payload["e"])
            new_name = self.names.mirror_name(
                payload["name"], mirror_is_databricks=self.mirror_is_databricks
            )
            if self.store.get_experiment(mirror_id).name != new_name:
                self.store.rename_experiment(mirror_id, new_name)
        elif kind == "experiment_tag":
            from mlflow.entities import ExperimentTag

            mirror_id = self.experiment_id(payload["e"])
            self.store.set_experiment_tag(mirror_id, ExperimentTag(payload["k"], payload["v"]))
        elif kind == "delete_experiment_tag":
            mirror_id = self.experiment_id(payload["e"])
            ignore_missing(lambda: self.store.delete_experiment_tag(mirror_id, payload["k"]))
        elif kind == "create_run":
            self.run_id(op.run, age=age, created=payload)
        elif kind == "update_run":
            self._apply_update_run(op.run, payload, age)
        elif kind in ("delete_run", "restore_run"):
            mirror_id = self.run_id(op.run, age=age)
            stage = self.store.get_run(mirror_id).info.lifecycle_stage
            if kind == "delete_run" and stage != "deleted":
                self.store.delete_run(mirror_id)
            elif kind == "restore_run" and stage == "deleted":
                self.store.restore_run(mirror_id)
        elif kind == "delete_tag":
            mirror_id = self.run_id(op.run, age=age)
            ignore_missing(lambda: self.store.delete_tag(mirror_id, payload["k"]))
        elif kind == "log_inputs":
            self._apply_inputs(op.run, payload, age)
        elif kind == "log_outputs":
            mirror_id = self.run_id(op.run, age=age)
            outputs = [[self.model_id(m, age=age), step] for m, step in payload["o"]]
            self.store.log_outputs(mirror_id, codec.model_outputs_in(outputs))
        elif kind == "record_model":
            self._apply_record_model(op.run, payload, age)
        elif kind == "create_model":
            self.model_id(payload["id"], age=age, created=payload)
        elif kind == "model_params":
            from mlflow.entities import LoggedModelParameter

            mirror_id = self.model_id(payload["id"], age=age)
            params = [LoggedModelParameter(k, v) for k, v in payload["p"]]
            self.store.log_logged_model_params(mirror_id, params)
        elif kind == "finalize_model":
            self._apply_finalize_model(payload, age)
        elif kind == "model_tags":
            from mlflow.entities import LoggedModelTag

            mirror_id = self.model_id(payload["id"], age=age)
            tags = [LoggedModelTag(k, v) for k, v in payload["t"] if not is_bookkeeping(k)]
            if tags:
                self.store.set_logged_model_tags(mirror_id, tags)
        elif kind == "delete_model_tag":
            mirror_id = self.model_id(payload["id"], age=age)
            ignore_missing(lambda: self.store.delete_logged_model_tag(mirror_id, payload["k"]))
        elif kind == "delete_model":
            mirror_id = self.model_id(payload["id"], age=age)
            ignore_missing(lambda: self.store.delete_logged_model(mirror_id))
        elif kind.startswith("reg_"):
            from spark_aml_bridge.dual import registry

            registry.apply(self, kind, payload, age)
        elif kind == "sync_artifacts":
            self.copy_run_artifacts(op.run, self.run_id(op.run, age=age))
        else:
            raise ValueError(f"unknown spooled operation '{kind}'")
        return 0

    def _apply_update_run(self, primary_id: str, payload: dict[str, Any], age: float) -> None:
        from mlflow.entities import RunStatus

        mirror_id = self.run_id(primary_id, age=age)
        if payload.get("artifacts"):
            self.copy_run_artifacts(primary_id, mirror_id)
        self.store.update_run_info(
            mirror_id, RunStatus.from_string(payload["status"]), payload["end"], payload["name"]
        )

    def _apply_inputs(self, primary_id: str, payload: dict[str, Any], age: float) -> None:
        mirror_id = self.run_id(primary_id, age=age)
        datasets = codec.datasets_in(payload.get("d") or [])
        model_ids = payload.get("models") or []
        if model_ids and self.native_logged_models():
            models = codec.model_inputs_in([self.model_id(m, age=age) for m in model_ids])
            self.store.log_inputs(mirror_id, datasets=datasets, models=models)
        elif datasets:
            self.store.log_inputs(mirror_id, datasets=datasets)

    def _apply_record_model(self, primary_id: str, payload: dict[str, Any], age: float) -> None:
        from mlflow.models import Model

        mirror_id = self.run_id(primary_id, age=age)
        entry = dict(payload["model"])
        existing = self.store.get_run(mirror_id).data.tags.get(HISTORY_TAG)
        if existing and entry.get("model_uuid"):
            try:
                if any(e.get("model_uuid") == entry["model_uuid"] for e in json.loads(existing)):
                    return  # already recorded (a replay)
            except (ValueError, AttributeError):
                pass
        entry["run_id"] = mirror_id
        model = Model(
            artifact_path=entry.get("artifact_path"),
            run_id=mirror_id,
            utc_time_created=entry.get("utc_time_created"),
            flavors=entry.get("flavors") or {},
            model_uuid=entry.get("model_uuid"),
        )
        self.store.record_logged_model(mirror_id, model)

    def _apply_finalize_model(self, payload: dict[str, Any], age: float) -> None:
        from mlflow.entities import LoggedModelStatus

        mirror_id = self.model_id(payload["id"], age=age)
        status = LoggedModelStatus(payload["status"])
        if status == LoggedModelStatus.READY:
            self.copy_model_artifacts(payload["id"], mirror_id)
        self.store.finalize_logged_model(mirror_id, status)

    # -- metrics, params and tags ---------------------------------------------------------------
    def _apply_batch(self, group: Group, retried: bool, age: float) -> int:
        mirror_id = self.run_id(group.run, age=age)
        rows = group.metrics
        if retried and rows:
            rows = self._without_present(mirror_id, rows)
        tags = self.translate_tags(group.tags, age=age) if group.tags else {}
        params = group.params
        if not (rows or params or tags):
            return 0
        linked = any(len(row) > 4 and row[4] for row in rows)
        if linked:
            translated = []
            for row in rows:
                if len(row) > 4 and row[4]:
                    row = [*row[:4], self.model_id(row[4], age=age), *row[5:]]
                translated.append(row)
            rows = translated
        if not linked and self._can_post_directly():
            self._post_batch(mirror_id, rows, params, tags)
        else:
            self.store.log_batch(
                mirror_id,
                metrics=codec.metrics_in(rows),
                params=codec.params_in(list(params.items())),
                tags=codec.tags_in(list(tags.items())),
            )
        return len(rows)

    def _without_present(self, mirror_id: str, rows: list[list[Any]]) -> list[list[Any]]:
        """Drop points the mirror already has: (key, step, timestamp, value), as a multiset."""
        present: Counter = Counter()
        for key in {row[0] for row in rows}:
            for point in self._history(mirror_id, key):
                present[codec.metric_key(*point)] += 1
        kept = []
        for row in rows:
            identity = codec.metric_key(row[0], row[1], row[2], row[3])
            if present[identity] > 0:
                present[identity] -= 1
                continue
            kept.append(row)
        if self.spool is not None:
            self.spool.counters["metrics_deduplicated"] += len(rows) - len(kept)
        return kept

    def _history(self, mirror_id: str, key: str) -> list[tuple[str, float, int, int]]:
        """A mirror metric's history as (key, value, timestamp, step); on a REST mirror one
        request per page without MLflow's retries (the worker retries, honouring Retry-After)."""
        if not self._can_post_directly():
            return [
                (m.key, m.value, m.timestamp, m.step)
                for m in self.store.get_metric_history(mirror_id, key)
            ]
        points: list[tuple[str, float, int, int]] = []
        token = None
        while True:
            params = {"run_id": mirror_id, "metric_key": key}
            if token:
                params["page_token"] = token
            body = call_once(
                self.store.get_host_creds(),
                "/api/2.0/mlflow/metrics/get-history",
                "GET",
                params=params,
                said="the mirror answered HTTP {status} to get-history",
            )
            for m in body.get("metrics") or []:
                value = m.get("value", 0.0)
                value = float(value) if not isinstance(value, str) else float(value.lower())
                points.append((m["key"], value, int(m.get("timestamp", 0)), int(m.get("step", 0))))
            token = body.get("next_page_token")
            if not token:
                return points

    def _can_post_directly(self) -> bool:
        """A REST mirror gets log-batch JSON built from the spool rows, sent without MLflow's
        blind POST retries (a retried log-batch could duplicate points): we retry, de-duplicated.
        """
        if self._fast_batch is None:
            from mlflow.store.tracking.rest_store import RestStore

            creds = None
            if isinstance(self.store, RestStore):
                try:
                    creds = self.store.get_host_creds()
                except Exception:  # noqa: BLE001
                    creds = None
            self._fast_batch = creds is not None and not getattr(creds, "use_databricks_sdk", False)
        return self._fast_batch

    def _post_batch(
        self, mirror_id: str, rows: list[list[Any]], params: dict[str, str], tags: dict[str, str]
    ) -> None:
        body = {
            "run_id": mirror_id,
            "metrics": [
                {"key": r[0], "value": _json_number(r[1]), "timestamp": r[2], "step": r[3]}
                for r in rows
            ],
            "params": [{"key": k, "value": v} for k, v in params.items()],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        call_once(
            self.store.get_host_creds(),
            "/api/2.0/mlflow/runs/log-batch",
            "POST",
            json_body=body,
            said="the mirror answered HTTP {status} to log-batch",
        )

    # -- artifacts ------------------------------------------------------------------------------
    def copy_run_artifacts(self, primary_id: str, mirror_id: str) -> int:
        from spark_aml_bridge.dual.artifacts import copy_artifacts

        source = self.primary.get_run(primary_id).info.artifact_uri
        target = self.store.get_run(mirror_id).info.artifact_uri
        if not source or not target:
            return 0
        return copy_artifacts(source, self.primary_uri, target, self.mirror_uri)

    def copy_model_artifacts(self, primary_id: str, mirror_id: str) -> int:
        from spark_aml_bridge.dual.artifacts import copy_artifacts

        source = self.primary.get_logged_model(primary_id, allow_deleted=True).artifact_location
        target = self.store.get_logged_model(mirror_id, allow_deleted=True).artifact_location
        if not source or not target:
            return 0
        return copy_artifacts(source, self.primary_uri, target, self.mirror_uri)


def _json_number(value: float) -> Any:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
