"""Logged-model methods of the ``azureml`` tracking store, kept in home runs (see run_models.py).

Mixed into the tracking store before the legacy mix-in (logged_models.py, whose ``m-<run id>``
models stay readable). Errors and validation follow MLflow's own tracking server.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mlflow.entities import RunTag, ViewType
from mlflow.exceptions import MlflowException

from spark_aml_bridge.azureml.logged_models import KIND_TAG, MODELS_EXPERIMENT, PREFIX
from spark_aml_bridge.azureml.run_models import (
    HAS_MODELS_TAG,
    MODELS_TAG,
    OUTPUTS_TAG,
    ModelRecord,
    RunModelLog,
    format_outputs,
    home_run_of,
    model_id_in_run,
    not_found,
    parse_outputs,
    server_error,
)

HOME_KIND = "logged_model_home"


class RunHomedLoggedModels:
    """The store provides: get_run, create_run, search_runs, log_batch, set_tag, list runs."""

    def _home_log(self, run_id: str) -> RunModelLog:
        cache = self.__dict__.setdefault("_home_uris", {})
        if run_id not in cache:
            cache[run_id] = self.get_run(run_id).info.artifact_uri
        return RunModelLog(cache[run_id])

    def _rm_create(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: Any = None,
        params: Any = None,
        model_type: str | None = None,
    ) -> Any:
        from spark_aml_bridge.mlflow_private import random_name

        _validate_name(name)
        name = name or random_name()
        now = int(time.time() * 1000)
        suffix = uuid.uuid4().hex[:12]
        if source_run_id:
            run = self.get_run(source_run_id)
            home_id, home_uri = run.info.run_id, run.info.artifact_uri
            listed = run.data.tags.get(MODELS_TAG, "")
            folder = name
            if _taken(home_uri, folder):  # a second model of that name in the run
                folder = f"{name}-{suffix}"
            home_tags = [
                RunTag(MODELS_TAG, ",".join(filter(None, [listed, suffix]))),
                RunTag(HAS_MODELS_TAG, "true"),
            ]
            self.log_batch(home_id, metrics=[], params=[], tags=home_tags)
        else:
            # Outside a run: a bookkeeping run in the hidden experiment is the model's home.
            home_tags = [
                RunTag(KIND_TAG, HOME_KIND),
                RunTag(PREFIX + "experiment_id", str(experiment_id)),
                RunTag(MODELS_TAG, suffix),
                RunTag(HAS_MODELS_TAG, "true"),
            ]
            run = self.create_run(self._models_experiment(), "", now, home_tags, name)
            home_id, home_uri, folder = run.info.run_id, run.info.artifact_uri, name
        self.__dict__.setdefault("_home_uris", {})[home_id] = home_uri
        model_id = model_id_in_run(home_id, suffix)
        fields = {
            "experiment_id": str(experiment_id),
            "name": name,
            "source_run_id": source_run_id or None,
            "model_type": model_type or None,
            "status": "PENDING",
            "status_message": None,
            "creation_timestamp": now,
            "artifact_location": f"{home_uri.rstrip('/')}/{folder}",
        }
        event = {
            "kind": "create",
            "time": now,
            "fields": fields,
            "tags": {t.key: str(t.value) for t in tags or []},
            "params": {p.key: str(p.value) for p in params or []},
        }
        self._home_log(home_id).append(model_id, event)
        record = ModelRecord(model_id)
        record.apply(event)
        return record.to_entity()

    def _rm_record(self, model_id: str, allow_deleted: bool = False) -> ModelRecord:
        home = home_run_of(model_id)
        try:
            record = self._home_log(home).read(model_id) if home else None
        except MlflowException:
            record = None
        if record is None or (record.deleted and not allow_deleted):
            raise not_found(model_id)
        return record

    def _rm_get(self, model_id: str, allow_deleted: bool = False) -> Any:
        return self._rm_record(model_id, allow_deleted).to_entity()

    def _rm_append(self, model_id: str, event: dict[str, Any], check: bool = True) -> None:
        if check:
            self._rm_record(model_id)  # MLflow's not-found error for unknown or deleted models
        self._home_log(home_run_of(model_id)).append(model_id, event)

    def _rm_log_params(self, model_id: str, params: Any) -> None:
        self._rm_append(model_id, {"kind": "params", "params": {p.key: p.value for p in params}})

    def _rm_set_tags(self, model_id: str, tags: Any) -> None:
        self._rm_append(model_id, {"kind": "tags", "tags": {t.key: str(t.value) for t in tags}})

    def _rm_delete_tag(self, model_id: str, key: str) -> None:
        record = self._rm_record(model_id)
        if key not in record.tags:
            raise server_error(
                "RESOURCE_DOES_NOT_EXIST",
                f"No tag with key {key!r} found for model with ID {model_id!r}.",
            )
        self._home_log(home_run_of(model_id)).append(model_id, {"kind": "delete_tag", "key": key})

    def _rm_finalize(self, model_id: str, status: Any) -> Any:
        from spark_aml_bridge.azureml.logged_models import _status

        record = self._rm_record(model_id)
        event = {"kind": "status", "status": _status(status).value, "time": _now()}
        self._home_log(home_run_of(model_id)).append(model_id, event)
        record.apply(event)
        return record.to_entity()

    def _rm_delete(self, model_id: str) -> None:
        self._rm_append(model_id, {"kind": "delete"})

    def _rm_log_metrics(self, run_id: str, metrics: list) -> None:
        by_model: dict[str, list] = {}
        for m in metrics:
            by_model.setdefault(m.model_id, []).append(
                {
                    "key": m.key,
                    "value": m.value,
                    "timestamp": m.timestamp,
                    "step": m.step,
                    "dataset_name": getattr(m, "dataset_name", None),
                    "dataset_digest": getattr(m, "dataset_digest", None),
                    "run_id": run_id,
                }
            )
        for model_id, points in by_model.items():
            # Unchecked: metrics follow a model MLflow itself just created or loaded.
            self._rm_append(model_id, {"kind": "metrics", "metrics": points}, check=False)

    def _rm_search(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: Any = None,
        max_results: int | None = None,
        order_by: Any = None,
        page_token: str | None = None,
    ) -> Any:
        """MLflow's search over every model of the experiments, filtered and sorted by MLflow's
        own SearchLoggedModelsUtils (the semantics of its tracking server)."""
        from spark_aml_bridge.mlflow_private import filter_and_sort_logged_models, paged_list

        wanted = {str(e) for e in experiment_ids}
        models = [m for m in self._rm_all_models(experiment_ids) if m.experiment_id in wanted]
        models = filter_and_sort_logged_models(models, filter_string, datasets, order_by)
        offset = int(page_token or 0)
        limit = max_results or 100
        window = models[offset : offset + limit]
        return paged_list(window, str(offset + limit) if offset + limit < len(models) else None)

    def _rm_all_models(self, experiment_ids: list[str]) -> list[Any]:
        """In-run homes (one equality search per experiment), bookkeeping homes and the
        models of earlier versions (one run each) in the hidden experiment; not deleted."""
        homes: list[Any] = []
        legacy: list[str] = []
        hidden = self.get_experiment_by_name(MODELS_EXPERIMENT)  # looked up, never created here
        for experiment_id in experiment_ids:
            homes += _all_runs(self, [str(experiment_id)], f"tags.`{HAS_MODELS_TAG}` = 'true'")
            bookkeeping = (
                _all_runs(
                    self,
                    [hidden.experiment_id],
                    f"tags.`{PREFIX}experiment_id` = '{experiment_id}'",
                )
                if hidden is not None
                else []
            )
            for run in bookkeeping:
                kind = run.data.tags.get(KIND_TAG)
                if kind == HOME_KIND:
                    homes.append(run)
                elif kind == "logged_model" and run.info.lifecycle_stage != "deleted":
                    legacy.append(run.info.run_id)
        models = []
        seen: set[str] = set()
        for run in homes:
            if run.info.run_id in seen:
                continue
            seen.add(run.info.run_id)
            self.__dict__.setdefault("_home_uris", {})[run.info.run_id] = run.info.artifact_uri
            records = RunModelLog(run.info.artifact_uri).read_many()
            models += [r.to_entity() for r in records.values() if not r.deleted]
        models += [self._lm_get(f"m-{run_id}") for run_id in legacy]
        return models

    # -- run outputs (MLflow 3): which models a run produced, kept in one run tag ------------
    def _rm_log_outputs(self, run_id: str, models: Any) -> None:
        run = self.get_run(run_id)
        outputs = parse_outputs(run.data.tags)
        outputs += [(m.model_id, int(m.step or 0)) for m in models]
        self.set_tag(run_id, RunTag(OUTPUTS_TAG, format_outputs(outputs)))


def with_outputs(run: Any) -> Any:
    """The run with MLflow 3's outputs.model_outputs filled from the bridge's run tag."""
    outputs = parse_outputs(run.data.tags)
    if not outputs:
        return run
    from mlflow.entities import LoggedModelOutput, Run, RunOutputs

    return Run(
        run.info,
        run.data,
        run.inputs,
        RunOutputs(model_outputs=[LoggedModelOutput(m, s) for m, s in outputs]),
    )


def _validate_name(name: str | None) -> None:
    from spark_aml_bridge.mlflow_private import validate_logged_model_name

    try:
        validate_logged_model_name(name)
    except MlflowException as exc:
        raise server_error("INVALID_PARAMETER_VALUE", exc.message) from None


def _taken(home_uri: str, folder: str) -> bool:
    from spark_aml_bridge.mlflow_private import artifact_repository

    try:
        return bool(artifact_repository(home_uri).list_artifacts(folder))
    except MlflowException:
        return False


def _all_runs(store: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = store.search_runs(experiment_ids, filter_string, ViewType.ALL, 1000, None, token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _now() -> int:
    return int(time.time() * 1000)


__all__ = ["RunHomedLoggedModels", "with_outputs", "MODELS_EXPERIMENT"]
