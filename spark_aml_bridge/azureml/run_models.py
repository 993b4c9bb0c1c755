"""MLflow 3 logged models kept in a run's own artifacts (the workspace has no logged-model API).

A model logged inside a run stores its files where every client looks: ``<run artifacts>/<name>``
(the MLflow 2 layout Azure ML studio shows), so ``runs:/<run>/<name>`` resolves for any client.
The model's own record (fields, tags, params, metrics with dataset and model links, status) is an
append-only log of small JSON events under ``<run artifacts>/.spark_aml_bridge/logged_models/
<model id>/`` — run artifacts are write-once, and a log of new files never rewrites one. The
model id ``m-<run id>.<suffix>`` names its home run, so a lookup needs no index. A model logged
outside a run gets a bookkeeping run of its own as its home (in a hidden experiment).

The home run lists its models in one tag (``spark_aml_bridge.models``) and is marked with
``spark_aml_bridge.has_models = true``, an equality filter Azure ML can answer, so searching an
experiment's models is one run search plus one artifact listing per run with models.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
import uuid
from typing import Any

from mlflow.exceptions import MlflowException

MODELS_TAG = "spark_aml_bridge.models"
HAS_MODELS_TAG = "spark_aml_bridge.has_models"
OUTPUTS_TAG = "spark_aml_bridge.model_outputs"
EVENTS_DIR = ".spark_aml_bridge/logged_models"


def model_id_in_run(run_id: str, suffix: str) -> str:
    return f"m-{run_id}.{suffix}"


def home_run_of(model_id: str) -> str | None:
    """The home run of a model id this module made, else None (a legacy or foreign id)."""
    if not model_id.startswith("m-") or "." not in model_id:
        return None
    run_id, _, suffix = model_id[2:].rpartition(".")
    return run_id if run_id and suffix else None


def server_error(error_code: str, message: str) -> MlflowException:
    """What MLflow's REST client raises when a tracking server answers this (same code, same
    text), so code written against a server sees the same error."""
    from mlflow.exceptions import RestException

    return RestException({"error_code": error_code, "message": message})


def not_found(model_id: str) -> MlflowException:
    return server_error("RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' not found.")


class ModelRecord:
    """The state of one model, folded from its event log."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.fields: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.metrics: list[dict[str, Any]] = []
        self.deleted = False
        self.updated = 0

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        self.updated = max(self.updated, int(event.get("time", 0)))
        if kind == "create":
            self.fields.update(event["fields"])
            self.tags.update(event.get("tags") or {})
            self.params.update(event.get("params") or {})
        elif kind == "params":
            self.params.update(event["params"])
        elif kind == "tags":
            self.tags.update(event["tags"])
        elif kind == "delete_tag":
            self.tags.pop(event["key"], None)
        elif kind == "status":
            self.fields["status"] = event["status"]
            self.fields["status_message"] = event.get("status_message")
        elif kind == "metrics":
            self.metrics.extend(event["metrics"])
        elif kind == "delete":
            self.deleted = True

    def to_entity(self) -> Any:
        from mlflow.entities import LoggedModel, LoggedModelStatus, Metric

        f = self.fields
        metrics = [
            Metric(
                m["key"],
                m["value"],
                m["timestamp"],
                m["step"],
                model_id=self.model_id,
                dataset_name=m.get("dataset_name"),
                dataset_digest=m.get("dataset_digest"),
                run_id=m.get("run_id"),
            )
            for m in self.metrics
        ]
        return LoggedModel(
            experiment_id=f["experiment_id"],
            model_id=self.model_id,
            name=f["name"],
            artifact_location=f["artifact_location"],
            creation_timestamp=f["creation_timestamp"],
            last_updated_timestamp=max(self.updated, f["creation_timestamp"]),
            # As MLflow's REST answers carry them: unset strings are "".
            model_type=f.get("model_type") or "",
            source_run_id=f.get("source_run_id") or "",
            status=LoggedModelStatus(f.get("status") or "PENDING"),
            status_message=f.get("status_message"),
            tags=dict(self.tags),
            params=dict(self.params),
            metrics=metrics,
        )


class RunModelLog:
    """Reads and appends model events in one home run's artifacts."""

    def __init__(self, run_artifact_uri: str) -> None:
        self.run_artifact_uri = run_artifact_uri.rstrip("/")

    def _repo(self, model_id: str | None = None) -> Any:
        from spark_aml_bridge.mlflow_private import artifact_repository

        uri = f"{self.run_artifact_uri}/{EVENTS_DIR}"
        return artifact_repository(f"{uri}/{model_id}" if model_id else uri)

    def append(self, model_id: str, event: dict[str, Any]) -> None:
        event.setdefault("time", int(time.time() * 1000))
        # Names sort in write order; the random tail keeps two writers in one ms apart.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.json"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8") as out:
                json.dump(event, out)
            self._repo(model_id).log_artifact(path)

    def read(self, model_id: str) -> ModelRecord | None:
        records = self.read_many([model_id])
        return records.get(model_id)

    def read_many(self, model_ids: list[str] | None = None) -> dict[str, ModelRecord]:
        """Fold the event logs of the given models (all of this run's models when None)."""
        # One listing with read URLs and one blob read per event file.
        if model_ids is not None and len(model_ids) == 1:
            found = self._repo(model_ids[0]).read_files("")
            files = {f"{model_ids[0]}/{name}": data for name, data in found.items()}
        else:
            files = self._repo().read_files("")
        events = [
            (remote, json.loads(data))
            for remote, data in files.items()
            if remote.count("/") == 1 and (model_ids is None or remote.split("/")[0] in model_ids)
        ]
        records: dict[str, ModelRecord] = {}
        for remote, event in sorted(events, key=lambda pair: posixpath.basename(pair[0])):
            model_id = remote.split("/", 1)[0]
            records.setdefault(model_id, ModelRecord(model_id)).apply(event)
        return {k: v for k, v in records.items() if v.fields}


def parse_outputs(tags: dict[str, str]) -> list[tuple[str, int]]:
    raw = tags.get(OUTPUTS_TAG)
    if not raw:
        return []
    return [(entry[0], int(entry[1])) for entry in json.loads(raw)]


def format_outputs(outputs: list[tuple[str, int]]) -> str:
    return json.dumps([[model_id, step] for model_id, step in outputs], separators=(",", ":"))
