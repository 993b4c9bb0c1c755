"""Compare the primary and the mirror, and copy what the mirror lacks.

One comparison serves three commands: ``verify`` lists the differences; ``backfill`` and the
reconciliation after a crash (``replay``) fix them. Fixing only ever adds what is missing or
updates what differs, so it is idempotent and incremental: a second run finds nothing to do.
Metric histories are compared as multisets of (key, step, timestamp, value); points the mirror
has twice are reported (MLflow cannot delete a metric point).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from spark_aml_bridge.dual import codec
from spark_aml_bridge.dual.failures import ignore_missing
from spark_aml_bridge.dual.mirror import HISTORY_TAG, Mirror
from spark_aml_bridge.dual.uri import PRIMARY_RUN_TAG, is_bookkeeping

_log = logging.getLogger(__name__)
# Experiment tags a server sets by itself (Databricks), which need not match.
_SERVER_EXPERIMENT_TAGS = ("mlflow.experimentType", "mlflow.ownerId", "mlflow.ownerEmail")


@dataclass
class Difference:
    scope: str  # e.g. "run 5f2c… (mirror 9a1b…)"
    field: str
    primary: Any
    mirror: Any
    fixed: bool = False

    def __str__(self) -> str:
        state = " [fixed]" if self.fixed else ""
        return (
            f"{self.scope}: {self.field}: primary={_short(self.primary)} "
            f"mirror={_short(self.mirror)}{state}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "field": self.field,
            "primary": _jsonable(self.primary),
            "mirror": _jsonable(self.mirror),
            "fixed": self.fixed,
        }


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


class Comparer:
    """Differences between the primary and the mirror, per run, experiment and logged model."""

    def __init__(self, mirror: Mirror, *, artifacts: bool = True, progress: Any = None) -> None:
        self.m = mirror
        self.artifacts = artifacts
        self.progress = progress  # spark_aml_bridge.progress.Progress, one step per run

    def _run_done(self) -> None:
        if self.progress is not None:
            self.progress.advance()

    # -- runs -----------------------------------------------------------------------------------
    def run(self, primary_id: str, *, fix: bool = False, run: Any = None) -> list[Difference]:
        from mlflow.entities import RunStatus

        m = self.m
        p = run or m.primary.get_run(primary_id)
        scope = f"run {primary_id}"
        diffs: list[Difference] = []
        mirror_id = m.lookup_run(primary_id, p.info.experiment_id)
        if mirror_id is None:
            if not fix:
                return [Difference(scope, "run", "present", "missing")]
            mirror_id = m.run_id(primary_id, force=True)
            diffs.append(Difference(scope, "run", "present", "missing", fixed=True))
        scope = f"run {primary_id} (mirror {mirror_id})"
        q = m.store.get_run(mirror_id)

        expected_experiment = m.experiment_id(p.info.experiment_id)
        if str(q.info.experiment_id) != expected_experiment:
            diffs.append(Difference(scope, "experiment", expected_experiment, q.info.experiment_id))

        # params
        missing_params = {}
        for key, value in p.data.params.items():
            if key not in q.data.params:
                missing_params[key] = value
            elif q.data.params[key] != value:
                diffs.append(Difference(scope, f"param {key}", value, q.data.params[key]))
        for key in q.data.params.keys() - p.data.params.keys():
            diffs.append(Difference(scope, f"param {key}", None, q.data.params[key]))
        # tags
        if fix:
            wanted = m.translate_tags(dict(p.data.tags), parent=lambda v: m.run_id(v, force=True))
        else:
            wanted = m.translate_tags(dict(p.data.tags), parent=m.lookup_run)
        have = {k: v for k, v in q.data.tags.items() if not is_bookkeeping(k)}
        set_tags = {}
        for key, value in wanted.items():
            if have.get(key) != value:
                if key == HISTORY_TAG and _same_history(value, have.get(key)):
                    continue
                set_tags[key] = value
                diffs.append(Difference(scope, f"tag {key}", value, have.get(key), fixed=fix))
        extra_tags = [k for k in have.keys() - wanted.keys()]
        for key in extra_tags:
            diffs.append(Difference(scope, f"tag {key}", None, have[key], fixed=fix))
        for key, value in missing_params.items():
            diffs.append(Difference(scope, f"param {key}", value, None, fixed=fix))
        if fix and (missing_params or set_tags):
            from mlflow.entities import Param, RunTag

            items = [Param(k, v) for k, v in missing_params.items()]
            tags = [RunTag(k, v) for k, v in set_tags.items()]
            for start in range(0, max(len(items), len(tags)), 100):
                m.store.log_batch(
                    mirror_id,
                    metrics=[],
                    params=items[start : start + 100],
                    tags=tags[start : start + 100],
                )
        if fix:
            for key in extra_tags:
                ignore_missing(lambda key=key: m.store.delete_tag(mirror_id, key))

        diffs += self._metrics(scope, primary_id, mirror_id, p, q, fix)
        diffs += self._inputs(scope, p, q, mirror_id, fix)

        if self.artifacts:
            diffs += self._artifacts(scope, primary_id, mirror_id, p, q, fix)

        # status, times, name, lifecycle last: a finished run on the mirror is complete.
        info_fields = {
            "status": (p.info.status, q.info.status),
            "start_time": (p.info.start_time, q.info.start_time),
            "end_time": (p.info.end_time, q.info.end_time),
            "run_name": (p.info.run_name, q.info.run_name),
        }
        changed = {k: v for k, v in info_fields.items() if v[0] != v[1]}
        for key, (a, b) in changed.items():
            fixable = key != "start_time"
            diffs.append(Difference(scope, key, a, b, fixed=fix and fixable))
        if fix and (changed.keys() - {"start_time"}):
            m.store.update_run_info(
                mirror_id,
                RunStatus.from_string(p.info.status),
                p.info.end_time,
                p.info.run_name,
            )
        if p.info.lifecycle_stage != q.info.lifecycle_stage:
            diffs.append(
                Difference(
                    scope, "lifecycle_stage", p.info.lifecycle_stage, q.info.lifecycle_stage, fix
                )
            )
            if fix:
                if p.info.lifecycle_stage == "deleted":
                    m.store.delete_run(mirror_id)
                else:
                    m.store.restore_run(mirror_id)
        return diffs

    def _metrics(
        self, scope: str, primary_id: str, mirror_id: str, p: Any, q: Any, fix: bool
    ) -> list[Difference]:
        m = self.m
        diffs = []
        to_log: list[list[Any]] = []
        for key in sorted(set(p.data.metrics) | set(q.data.metrics)):
            want = Counter(
                codec.metric_key(x.key, x.value, x.timestamp, x.step)
                for x in m.primary.get_metric_history(primary_id, key)
            )
            have = Counter(
                codec.metric_key(x.key, x.value, x.timestamp, x.step)
                for x in m.store.get_metric_history(mirror_id, key)
            )
            missing = want - have
            extra = have - want
            if missing:
                count = sum(missing.values())
                example = next(iter(missing))
                diffs.append(
                    Difference(
                        scope,
                        f"metric {key}",
                        f"{sum(want.values())} points",
                        f"{count} missing, e.g. step {example[3]} value {example[1]}",
                        fixed=fix,
                    )
                )
                for (k, value, timestamp, step), n in missing.items():
                    to_log.extend([[k, float(value), timestamp, step]] * n)
            if extra:
                count = sum(extra.values())
                example = next(iter(extra))
                duplicated = sum(min(n, want[x]) for x, n in extra.items() if want[x])
                what = "duplicated" if duplicated == count else "not on the primary"
                diffs.append(
                    Difference(
                        scope,
                        f"metric {key}",
                        f"{sum(want.values())} points",
                        f"{count} extra points ({what}), e.g. step {example[3]} value {example[1]}",
                    )
                )
        if fix and to_log:
            for start in range(0, len(to_log), 1000):
                m.store.log_batch(
                    mirror_id,
                    metrics=codec.metrics_in(to_log[start : start + 1000]),
                    params=[],
                    tags=[],
                )
        return diffs

    def _inputs(self, scope: str, p: Any, q: Any, mirror_id: str, fix: bool) -> list[Difference]:
        def key(d: Any) -> tuple:
            ds = d.dataset
            tags = tuple(sorted((t.key, t.value) for t in d.tags or ()))
            return (ds.name, ds.digest, ds.source_type, ds.source, tags)

        primary_inputs = getattr(p, "inputs", None)
        mirror_inputs = getattr(q, "inputs", None)
        want = {key(d): d for d in getattr(primary_inputs, "dataset_inputs", None) or ()}
        have = {key(d) for d in getattr(mirror_inputs, "dataset_inputs", None) or ()}
        missing = [d for k, d in want.items() if k not in have]
        diffs = [
            Difference(scope, f"dataset {d.dataset.name}", d.dataset.digest, None, fixed=fix)
            for d in missing
        ]
        for k in have - want.keys():
            diffs.append(Difference(scope, f"dataset {k[0]}", None, k[1]))
        if fix and missing:
            self.m.store.log_inputs(mirror_id, datasets=missing)
        return diffs

    def _artifacts(
        self, scope: str, primary_id: str, mirror_id: str, p: Any, q: Any, fix: bool
    ) -> list[Difference]:
        from spark_aml_bridge.dual.artifacts import artifact_repo, list_files

        m = self.m
        try:
            want = set(list_files(artifact_repo(p.info.artifact_uri, m.primary_uri)))
        except Exception as exc:  # noqa: BLE001
            return [Difference(scope, "artifacts", f"unreadable: {exc}", None)]
        try:
            have = set(list_files(artifact_repo(q.info.artifact_uri, m.mirror_uri)))
        except Exception as exc:  # noqa: BLE001
            have, error = set(), exc
        else:
            error = None
        missing = sorted(want - have)
        diffs = []
        if missing:
            diffs.append(
                Difference(
                    scope,
                    "artifacts",
                    f"{len(want)} files",
                    f"{len(missing)} missing, e.g. {missing[0]}" + (f" ({error})" if error else ""),
                    fixed=fix,
                )
            )
            if fix:
                m.copy_run_artifacts(primary_id, mirror_id)
        extra = [f for f in sorted(have - want) if not _kept_by_workspace(f, have, want)]
        if extra:
            diffs.append(
                Difference(scope, "artifacts", None, f"{len(extra)} extra, e.g. {extra[0]}")
            )
        return diffs

    # -- logged models (MLflow 3) ---------------------------------------------------------------
    def model(self, primary_id: str, *, fix: bool = False, model: Any = None) -> list[Difference]:
        from mlflow.entities import LoggedModelParameter, LoggedModelTag

        m = self.m
        p = model or m.primary.get_logged_model(primary_id, allow_deleted=True)
        scope = f"logged model {primary_id}"
        mirror_experiment = m.experiment_id(p.experiment_id)
        mirror_id = m.ids.get("model", primary_id) or m.find_model(mirror_experiment, primary_id)
        diffs: list[Difference] = []
        if mirror_id is None:
            if not fix:
                return [Difference(scope, "logged model", p.name, "missing")]
            if p.source_run_id:
                m.run_id(p.source_run_id, force=True)
            mirror_id = m.model_id(primary_id, age=float("inf"))
            diffs.append(Difference(scope, "logged model", p.name, "missing", fixed=True))
        else:
            m.ids.put("model", primary_id, mirror_id)
        scope = f"logged model {primary_id} (mirror {mirror_id})"
        q = m.store.get_logged_model(mirror_id, allow_deleted=True)
        if p.name != q.name:
            diffs.append(Difference(scope, "name", p.name, q.name))
        if str(p.status) != str(q.status):
            diffs.append(Difference(scope, "status", str(p.status), str(q.status), fixed=fix))
        if (p.model_type or None) != (q.model_type or None):
            diffs.append(Difference(scope, "model_type", p.model_type, q.model_type))
        if p.source_run_id:
            expected = m.lookup_run(p.source_run_id)
            if expected != q.source_run_id:
                diffs.append(Difference(scope, "source_run_id", expected, q.source_run_id))
        missing_params = {k: v for k, v in p.params.items() if k not in q.params}
        for key, value in p.params.items():
            if key in q.params and q.params[key] != value:
                diffs.append(Difference(scope, f"param {key}", value, q.params[key]))
        for key, value in missing_params.items():
            diffs.append(Difference(scope, f"param {key}", value, None, fixed=fix))
        want_tags = {k: v for k, v in p.tags.items() if not is_bookkeeping(k)}
        have_tags = {k: v for k, v in self._model_tags(q).items() if not is_bookkeeping(k)}
        set_tags = {k: v for k, v in want_tags.items() if have_tags.get(k) != v}
        for key, value in set_tags.items():
            diffs.append(Difference(scope, f"tag {key}", value, have_tags.get(key), fixed=fix))
        for key in have_tags.keys() - want_tags.keys():
            diffs.append(Difference(scope, f"tag {key}", None, have_tags[key]))
        want_metrics = Counter(
            codec.metric_key(x.key, x.value, x.timestamp, x.step) for x in p.metrics or ()
        )
        have_metrics = Counter(
            codec.metric_key(x.key, x.value, x.timestamp, x.step) for x in q.metrics or ()
        )
        if want_metrics != have_metrics:
            diffs.append(
                Difference(
                    scope,
                    "metrics",
                    sorted(want_metrics.elements())[:5],
                    sorted(have_metrics.elements())[:5],
                )
            )
        if self.artifacts:
            from spark_aml_bridge.dual.artifacts import artifact_repo, list_files

            want = set(list_files(artifact_repo(p.artifact_location, m.primary_uri)))
            have = set(list_files(artifact_repo(q.artifact_location, m.mirror_uri)))
            if want - have:
                diffs.append(
                    Difference(
                        scope,
                        "artifacts",
                        f"{len(want)} files",
                        f"{len(want - have)} missing, e.g. {sorted(want - have)[0]}",
                        fixed=fix,
                    )
                )
                if fix:
                    m.copy_model_artifacts(primary_id, mirror_id)
        if fix:
            if missing_params:
                m.store.log_logged_model_params(
                    mirror_id, [LoggedModelParameter(k, v) for k, v in missing_params.items()]
                )
            if set_tags:
                m.store.set_logged_model_tags(
                    mirror_id, [LoggedModelTag(k, v) for k, v in set_tags.items()]
                )
            if str(p.status) != str(q.status):
                m.store.finalize_logged_model(mirror_id, p.status)
        return diffs

    def _model_tags(self, model: Any) -> dict[str, str]:
        """A mirror model's tags; for the workspace's client-side models, the tags of the run
        that holds the model, including those LoggedModel.tags hides."""
        from spark_aml_bridge.azureml.run_models import home_run_of

        if self.m.native_logged_models() or home_run_of(model.model_id):
            return dict(model.tags)
        from spark_aml_bridge.azureml.logged_models import KIND_TAG, PREFIX, run_id_for

        tags = self.m.store.get_run(run_id_for(model.model_id)).data.tags
        hidden = (PREFIX, KIND_TAG, "mlflow.runName")
        return {k: v for k, v in tags.items() if not k.startswith(hidden)}

    # -- experiments ----------------------------------------------------------------------------
    def experiment(
        self, primary_id: str, *, fix: bool = False, run_ids: list[str] | None = None
    ) -> list[Difference]:
        from mlflow.entities import ExperimentTag, ViewType

        m = self.m
        p = m.primary.get_experiment(primary_id)
        scope = f"experiment {p.name!r} ({primary_id})"
        diffs: list[Difference] = []
        mirror_id = m.ids.get("experiment", primary_id)
        expected_name = m.names.mirror_name(p.name, mirror_is_databricks=m.mirror_is_databricks)
        if mirror_id is None:
            existing = m.store.get_experiment_by_name(expected_name)
            from spark_aml_bridge.dual.uri import PRIMARY_EXPERIMENT_TAG

            if existing is None or existing.tags.get(PRIMARY_EXPERIMENT_TAG) != primary_id:
                if not fix and existing is None:
                    return [Difference(scope, "experiment", expected_name, "missing")]
                if fix and existing is None:
                    diffs.append(
                        Difference(scope, "experiment", expected_name, "missing", fixed=True)
                    )
        mirror_id = m.experiment_id(primary_id)
        q = m.store.get_experiment(mirror_id)
        scope = f"experiment {p.name!r} ({primary_id}; mirror {q.name!r} {mirror_id})"
        if q.name != expected_name and not q.name.startswith(expected_name + "-"):
            diffs.append(Difference(scope, "name", expected_name, q.name))
        if p.lifecycle_stage != q.lifecycle_stage:
            diffs.append(
                Difference(scope, "lifecycle_stage", p.lifecycle_stage, q.lifecycle_stage, fix)
            )
            if fix:
                if p.lifecycle_stage == "deleted":
                    m.store.delete_experiment(mirror_id)
                else:
                    m.store.restore_experiment(mirror_id)
        want_tags = {
            k: v
            for k, v in p.tags.items()
            if not is_bookkeeping(k) and k not in _SERVER_EXPERIMENT_TAGS
        }
        for key, value in want_tags.items():
            if q.tags.get(key) != value:
                diffs.append(Difference(scope, f"tag {key}", value, q.tags.get(key), fixed=fix))
                if fix:
                    m.store.set_experiment_tag(mirror_id, ExperimentTag(key, value))

        # runs: every primary run, parents before children
        runs = []
        token = None
        while True:
            page = m.primary.search_runs(
                [primary_id], None, ViewType.ALL, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        if run_ids is not None:
            runs = [r for r in runs if r.info.run_id in set(run_ids)]
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        if self.progress is not None and self.progress.total is not None:
            self.progress.add_total(len(runs))
        for run in runs:
            diffs += self.run(run.info.run_id, fix=fix, run=run)
            self._run_done()
        diffs += self._duplicate_mirror_runs(
            scope, mirror_id, {r.info.run_id for r in runs}, complete=run_ids is None
        )
        diffs += self.models_of(primary_id, fix=fix)
        return diffs

    def _duplicate_mirror_runs(
        self, scope: str, mirror_experiment: str, primary_ids: set[str], *, complete: bool
    ) -> list[Difference]:
        """Mirror runs made twice for one primary run, or (`complete`) for none."""
        from mlflow.entities import ViewType

        counts: Counter = Counter()
        token = None
        while True:
            page = self.m.store.search_runs(
                [mirror_experiment], None, ViewType.ALL, max_results=1000, page_token=token
            )
            for run in page:
                primary_id = run.data.tags.get(PRIMARY_RUN_TAG)
                if primary_id:
                    counts[primary_id] += 1
            token = page.token
            if not token:
                break
        diffs = []
        for primary_id, n in counts.items():
            if n > 1:
                diffs.append(
                    Difference(scope, f"run {primary_id}", "1 mirror run", f"{n} mirror runs")
                )
            elif complete and primary_id not in primary_ids:
                diffs.append(Difference(scope, f"run {primary_id}", "missing", "present"))
        return diffs

    def models_of(self, primary_experiment: str, *, fix: bool = False) -> list[Difference]:
        search = getattr(self.m.primary, "search_logged_models", None)
        if search is None:
            return []
        diffs = []
        token = None
        while True:
            try:
                page = search(
                    experiment_ids=[primary_experiment], max_results=100, page_token=token
                )
            except NotImplementedError:
                return diffs
            except Exception as exc:  # noqa: BLE001 - MLflow 2 servers have no logged models
                if "logged-models" in str(exc) or "404" in str(exc) or "NotImplemented" in str(exc):
                    return diffs
                raise
            for model in page:
                diffs += self.model(model.model_id, fix=fix, model=model)
            token = page.token
            if not token:
                return diffs


def _same_history(a: str | None, b: str | None) -> bool:
    """Same logged-model history apart from entry order."""
    try:
        left = sorted(json.dumps(e, sort_keys=True) for e in json.loads(a or "[]"))
        right = sorted(json.dumps(e, sort_keys=True) for e in json.loads(b or "[]"))
    except ValueError:
        return False
    return left == right


def _kept_by_workspace(path: str, have: set[str], want: set[str]) -> bool:
    """Files the workspace side keeps in a run that the other side keeps elsewhere: the
    bridge's model records, and the folders of models logged in the run (MLmodel inside)."""
    import posixpath

    from spark_aml_bridge.azureml.run_models import EVENTS_DIR

    if path.startswith(EVENTS_DIR.split("/", 1)[0] + "/"):
        return True
    folder = posixpath.dirname(path)
    while folder and f"{folder}/MLmodel" not in have:
        folder = posixpath.dirname(folder)
    return bool(folder) and not any(w.startswith(folder + "/") for w in want)
