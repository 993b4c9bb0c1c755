"""MLflow 3 logged models on a workspace that lacks the logged-model API (AML answers 404).

Each logged model is kept as a run in one hidden experiment of the workspace, so it uses only
what every AML workspace has: the run holds the model's artifacts, params, metrics and tags, and
``spark_aml_bridge.lm.*`` tags hold the model's own fields. The model id is ``m-<that run id>``,
so ``models:/m-…`` URIs resolve with one ``get_run``. Used only after the workspace answered 404.
"""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from spark_aml_bridge.azureml.run_models import not_found
from spark_aml_bridge.mlflow_private import filter_and_sort_logged_models, paged_list

MODELS_EXPERIMENT = "spark_aml_bridge_logged_models"
PREFIX = "spark_aml_bridge.lm."
KIND_TAG = "spark_aml_bridge.kind"
_FIELDS = ("experiment_id", "name", "source_run_id", "model_type", "status", "status_message")
_HIDDEN_TAGS = ("mlflow.runName", "mlflow.user", "spark_aml_bridge.")


def model_id_for(run_id: str) -> str:
    return f"m-{run_id}"


def run_id_for(model_id: str) -> str:
    if not model_id.startswith("m-"):
        raise not_found(model_id)
    return model_id[2:]


class ClientSideLoggedModels:
    """Logged-model methods of a tracking store, built from runs (mixed into the store)."""

    _models_experiment_id: str | None = None

    # The store provides: get_run, create_run, search_runs, log_batch, set_tag, delete_tag,
    # update_run_info, delete_run, get_experiment_by_name, create_experiment.

    def _models_experiment(self) -> str:
        if self._models_experiment_id is None:
            existing = self.get_experiment_by_name(MODELS_EXPERIMENT)
            self._models_experiment_id = (
                existing.experiment_id
                if existing is not None
                else self.create_experiment(MODELS_EXPERIMENT)
            )
        return self._models_experiment_id

    def _lm_create(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: Any = None,
        params: Any = None,
        model_type: str | None = None,
    ) -> Any:
        from mlflow.entities import LoggedModelStatus

        name = name or f"model-{int(time.time() * 1000)}"
        fields = {
            "experiment_id": str(experiment_id),
            "name": name,
            "source_run_id": source_run_id or "",
            "model_type": model_type or "",
            "status": LoggedModelStatus.PENDING.value,
        }
        run_tags = [RunTag(KIND_TAG, "logged_model")]
        run_tags += [RunTag(PREFIX + k, str(v)) for k, v in fields.items()]
        run_tags += [RunTag(t.key, t.value) for t in tags or []]
        run = self.create_run(
            self._models_experiment(), "", int(time.time() * 1000), run_tags, name
        )
        if params:
            self._lm_log_params(model_id_for(run.info.run_id), params)
        return self._lm_get(model_id_for(run.info.run_id))

    def _lm_log_params(self, model_id: str, params: Any) -> None:
        run_id = run_id_for(model_id)
        params = list(params)
        for start in range(0, len(params), 100):
            chunk = [Param(p.key, str(p.value)) for p in params[start : start + 100]]
            self.log_batch(run_id, metrics=[], params=chunk, tags=[])

    def _lm_get(self, model_id: str, allow_deleted: bool = False) -> Any:
        from mlflow.entities import LoggedModel

        try:
            run = self.get_run(run_id_for(model_id))
        except MlflowException as exc:
            raise not_found(model_id) from exc
        tags = run.data.tags
        if tags.get(KIND_TAG) != "logged_model" or (
            run.info.lifecycle_stage == "deleted" and not allow_deleted
        ):
            raise not_found(model_id)
        field = {k: tags.get(PREFIX + k) or None for k in _FIELDS}
        user_tags = {k: v for k, v in tags.items() if not k.startswith(_HIDDEN_TAGS)}
        metrics = [
            Metric(m.key, m.value, m.timestamp, m.step)
            for key in run.data.metrics
            for m in self.get_metric_history(run.info.run_id, key)
        ]
        return LoggedModel(
            experiment_id=field["experiment_id"],
            model_id=model_id,
            name=field["name"],
            artifact_location=run.info.artifact_uri,
            creation_timestamp=run.info.start_time,
            last_updated_timestamp=run.info.end_time or run.info.start_time,
            model_type=field["model_type"],
            source_run_id=field["source_run_id"],
            status=_status(field["status"]),
            status_message=field["status_message"],
            tags=user_tags,
            params=dict(run.data.params),
            metrics=metrics,
        )

    def _lm_finalize(self, model_id: str, status: Any) -> Any:
        from mlflow.entities import RunStatus

        run_id = run_id_for(model_id)
        status = _status(status)
        self.set_tag(run_id, RunTag(PREFIX + "status", status.value))
        ready = status.value == "READY"
        self.update_run_info(
            run_id, RunStatus.FINISHED if ready else RunStatus.FAILED, int(time.time() * 1000), None
        )
        return self._lm_get(model_id)

    def _lm_set_tags(self, model_id: str, tags: Any) -> None:
        run_id = run_id_for(model_id)
        self.log_batch(run_id, metrics=[], params=[], tags=[RunTag(t.key, t.value) for t in tags])

    def _lm_delete_tag(self, model_id: str, key: str) -> None:
        self.delete_tag(run_id_for(model_id), key)

    def _lm_delete(self, model_id: str) -> None:
        self.delete_run(run_id_for(model_id))

    def _lm_search(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: Any = None,
        max_results: int | None = None,
        order_by: Any = None,
        page_token: str | None = None,
    ) -> Any:
        models = []
        for experiment_id in experiment_ids:
            # AML filters support '=' on tags and AND, not OR: one query per experiment.
            token = None
            while True:
                page = self.search_runs(
                    [self._models_experiment()],
                    f"tags.`{PREFIX}experiment_id` = '{experiment_id}'",
                    ViewType.ACTIVE_ONLY,
                    1000,
                    None,
                    token,
                )
                models += [self._lm_get(model_id_for(r.info.run_id)) for r in page]
                token = page.token
                if not token:
                    break
        models = filter_and_sort_logged_models(models, filter_string, datasets, order_by)
        offset = int(page_token or 0)
        limit = max_results or 100
        window = models[offset : offset + limit]
        next_token = str(offset + limit) if offset + limit < len(models) else None
        return paged_list(window, next_token)

    def _lm_log_outputs(self, run_id: str, models: Any) -> None:
        # Recorded on the model's run: which runs used the model as an output.
        for output in models:
            self.set_tag(run_id_for(output.model_id), RunTag(PREFIX + "output_run_id", str(run_id)))


def _status(raw: Any) -> Any:
    from mlflow.entities import LoggedModelStatus

    if raw is None or raw == "":
        return LoggedModelStatus.READY
    if isinstance(raw, LoggedModelStatus):
        return raw
    if isinstance(raw, int):
        return LoggedModelStatus.from_int(raw)
    return LoggedModelStatus(str(raw))
