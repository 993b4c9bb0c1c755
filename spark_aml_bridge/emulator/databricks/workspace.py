"""The Databricks workspace double: MLflow REST with personal-access-token auth (the `databricks`
tracking URI), the Jobs API's one-time runs (recorded, not run), and a fast 404 for the SDK's
``/.well-known/databricks-config`` probe. Plain HTTP on 127.0.0.1, as a test double may be.

Jobs API contract (``POST /api/2.{1,2}/jobs/runs/submit``, ``GET .../runs/get``), checked as
documented: ``tasks`` non-empty, unique ``task_key`` each, exactly one task type
(``notebook_task`` / ``spark_python_task`` / ``python_wheel_task``, with their required fields),
exactly one compute (``existing_cluster_id`` / ``new_cluster`` / ``job_cluster_key`` /
``environment_key``; serverless notebooks may omit it), ``new_cluster.spark_version``, string
``spark_env_vars``. Errors answer ``{"error_code", "message"}`` like Databricks REST.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

_MLFLOW = re.compile(r"^/(?:ajax-)?api/[234]\.0/mlflow(?:-artifacts)?(?:/|$)")
_JOBS = re.compile(r"^/api/2\.[012]/jobs/runs/(?P<op>submit|get)$")
_TASK_TYPES = {
    "notebook_task": ("notebook_path",),
    "spark_python_task": ("python_file",),
    "python_wheel_task": ("package_name", "entry_point"),
}
_COMPUTE = ("existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key")
_TASK_KEY = re.compile(r"^[\w\-]{1,100}$")


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        json.dumps({"error_code": code, "message": message}),
        status=status,
        content_type="application/json",
    )


def _ok(payload: Any) -> Response:
    return Response(json.dumps(payload), status=200, content_type="application/json")


class JobsDouble:
    """One-time runs: validated, recorded with their raw body, reported as finished."""

    def __init__(self, host: str, org_id: str) -> None:
        self.host = host
        self.org_id = org_id
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self.runs: dict[int, dict[str, Any]] = {}
        self.submissions: list[dict[str, Any]] = []

    def submit(self, request: Request) -> Response:
        raw = request.get_data(as_text=True)
        try:
            body = json.loads(raw or "{}")
        except ValueError:
            return _error(400, "MALFORMED_REQUEST", "Could not parse request object: invalid JSON")
        problem = validate_submit(body)
        if problem:
            return _error(400, "INVALID_PARAMETER_VALUE", problem)
        with self._lock:
            run_id = next(self._ids)
            now = int(time.time() * 1000)
            self.submissions.append(
                {
                    "run_id": run_id,
                    "raw": raw,
                    "body": body,
                    "headers": {
                        k: v for k, v in request.headers.items() if k.lower() != "authorization"
                    },
                }
            )
            self.runs[run_id] = {"body": body, "start_time": now}
        return _ok({"run_id": run_id})

    def get(self, request: Request) -> Response:
        try:
            run_id = int(request.args.get("run_id", ""))
        except ValueError:
            return _error(400, "INVALID_PARAMETER_VALUE", "run_id must be an integer")
        with self._lock:
            run = self.runs.get(run_id)
        if run is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
        body = run["body"]
        state = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
        tasks = [
            {**task, "run_id": run_id * 10 + i, "state": state}
            for i, task in enumerate(body.get("tasks", []))
        ]
        return _ok(
            {
                "job_id": run_id,
                "run_id": run_id,
                "number_in_job": run_id,
                "run_name": body.get("run_name", "Untitled"),
                "run_type": "SUBMIT_RUN",
                "state": state,
                "status": {
                    "state": "TERMINATED",
                    "termination_details": {"code": "SUCCESS", "type": "SUCCESS", "message": ""},
                },
                "tasks": tasks,
                "start_time": run["start_time"],
                "end_time": run["start_time"] + 1000,
                "run_page_url": f"{self.host}/?o={self.org_id}#job/{run_id}/run/{run_id}",
            }
        )


def validate_submit(body: Any) -> str | None:
    """What `runs/submit` rejects, as a Databricks error message; None when the body is valid."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        return "At least one task is required."
    seen: set[str] = set()
    for task in tasks:
        if not isinstance(task, dict):
            return "Each task must be an object."
        key = task.get("task_key")
        if not isinstance(key, str) or not _TASK_KEY.match(key):
            return f"Invalid task_key: {key!r}."
        if key in seen:
            return f"Task key {key} is not unique."
        seen.add(key)
        kinds = [k for k in _TASK_TYPES if k in task]
        if len(kinds) != 1:
            return f"Task {key} must have exactly one task type (one of {', '.join(_TASK_TYPES)})."
        for field in _TASK_TYPES[kinds[0]]:
            if not task[kinds[0]].get(field):
                return f"Task {key}: {kinds[0]}.{field} is required."
        computes = [c for c in _COMPUTE if c in task]
        if len(computes) > 1:
            return f"Task {key} may set only one of {', '.join(_COMPUTE)}."
        if not computes and kinds[0] != "notebook_task":
            return f"Task {key} needs a compute: one of {', '.join(_COMPUTE)}."
        cluster = task.get("new_cluster")
        if cluster is not None:
            problem = _validate_cluster(key, cluster)
            if problem:
                return problem
    return None


def _validate_cluster(key: str, cluster: Any) -> str | None:
    if not isinstance(cluster, dict):
        return f"Task {key}: new_cluster must be an object."
    if not cluster.get("spark_version"):
        return f"Task {key}: new_cluster.spark_version is required."
    if "num_workers" not in cluster and "autoscale" not in cluster:
        return f"Task {key}: new_cluster needs num_workers or autoscale."
    env = cluster.get("spark_env_vars", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        return f"Task {key}: new_cluster.spark_env_vars must map strings to strings."
    return None


class DatabricksWorkspaceApp:
    """WSGI app for ``http://127.0.0.1:<port>``."""

    def __init__(self, mlflow_app: WSGIApp, token: str, jobs: JobsDouble) -> None:
        self.mlflow_app = mlflow_app
        self.token = token
        self.jobs = jobs
        self.well_known_probes = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/.well-known/databricks-config":
            # databricks-sdk probes this whenever a Config is built: answer fast, unauthenticated.
            self.well_known_probes += 1
            return _error(404, "NOT_FOUND", "Not found")(environ, start_response)
        if path == "/health":
            return _ok({"status": "ok"})(environ, start_response)
        if not self._authorized(environ.get("HTTP_AUTHORIZATION")):
            return _error(401, "UNAUTHENTICATED", "Invalid access token.")(environ, start_response)
        if _MLFLOW.match(path):
            return self.mlflow_app(environ, start_response)
        request = Request(environ)
        match = _JOBS.match(path)
        if match:
            op = match["op"]
            if op == "submit" and request.method == "POST":
                return self.jobs.submit(request)(environ, start_response)
            if op == "get" and request.method == "GET":
                return self.jobs.get(request)(environ, start_response)
            return _error(405, "BAD_REQUEST", f"{request.method} is not allowed on {path}")(
                environ, start_response
            )
        if path == "/_double/jobs/submissions":
            return _ok(self.jobs.submissions)(environ, start_response)
        if path == "/_double/stats":
            return _ok({"well_known_probes": self.well_known_probes})(environ, start_response)
        return _error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {path}'")(
            environ, start_response
        )

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.token.encode()
        )
