"""Artifacts of either side through MLflow's own artifact repositories, and copying between them.

Some artifact URIs only make sense next to their tracking URI: ``mlflow-artifacts:/…`` (a
``mlflow server`` resolves them against the tracking URI, which must be http(s)) and ``dbfs:/…``
(Databricks, resolved against the current tracking URI). Under a ``dual:`` tracking URI they are
resolved against the side they belong to, once, when a run or model is read.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

_log = logging.getLogger(__name__)


def resolve_artifact_uri(uri: str, tracking_uri: str) -> str:
    """`uri` made independent of the current tracking URI (unchanged when it already is)."""
    if not uri:
        return uri
    scheme = urlparse(uri).scheme
    tracking = urlparse(tracking_uri)
    if scheme == "mlflow-artifacts" and tracking.scheme in ("http", "https"):
        from spark_aml_bridge.mlflow_private import resolve_mlflow_artifacts_uri

        return resolve_mlflow_artifacts_uri(uri, tracking_uri)
    if scheme == "dbfs" and (tracking_uri == "databricks" or tracking.scheme == "databricks"):
        parsed = urlparse(uri)
        if parsed.netloc:  # already names a profile
            return uri
        profile = tracking.netloc if tracking.scheme == "databricks" else ""
        netloc = f"{profile}@databricks" if profile else "databricks"
        return f"dbfs://{netloc}{parsed.path}"
    return uri


def artifact_repo(uri: str, tracking_uri: str) -> Any:
    from spark_aml_bridge.mlflow_private import artifact_repository

    return artifact_repository(resolve_artifact_uri(uri, tracking_uri), tracking_uri)


def list_files(repo: Any, path: str | None = None) -> Iterator[str]:
    """Every file path under `path` of an artifact repository, recursively."""
    all_paths = getattr(repo, "_all_paths", None)  # the azureml repository lists all at once
    if path is None and callable(all_paths):
        root = getattr(repo, "_root", "")
        for full in all_paths():
            if root:
                if not full.startswith(root + "/"):
                    continue
                full = full[len(root) + 1 :]
            yield full
        return
    for info in repo.list_artifacts(path) or []:
        if info.is_dir:
            yield from list_files(repo, info.path)
        else:
            yield info.path


def copy_artifacts(src_uri: str, src_tracking: str, dst_uri: str, dst_tracking: str) -> int:
    """Copy the files under `src_uri` that `dst_uri` lacks; returns how many were copied.

    Idempotent: a file already present on the destination (same path) is not copied again,
    which is also what a write-once store (Azure ML) needs.
    """
    src = artifact_repo(src_uri, src_tracking)
    wanted = sorted(set(list_files(src)))
    if not wanted:
        return 0
    dst = artifact_repo(dst_uri, dst_tracking)
    present = set(list_files(dst))
    missing = [p for p in wanted if p not in present]
    if not missing:
        return 0
    with tempfile.TemporaryDirectory(prefix="spark-aml-bridge-artifacts-") as tmp:
        if not present:
            local_root = src.download_artifacts("", tmp)
            dst.log_artifacts(local_root)
        else:
            for path in missing:
                local = src.download_artifacts(path, tmp)
                parent = posixpath.dirname(path)
                dst.log_artifact(local, parent or None)
                os.unlink(local)
    _log.debug("copied %d artifact file(s) from %s to %s", len(missing), src_uri, dst_uri)
    return len(missing)
