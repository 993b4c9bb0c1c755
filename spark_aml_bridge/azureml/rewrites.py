"""Rewriting a run artifact on Azure ML, where run artifacts are write-once.

MLflow code rewrites files in a run (autologging that logs ``metric_info.json`` twice, a
``log_dict`` updated per epoch). On an MLflow server the newest content wins; Azure ML refuses
the second write. The bridge keeps every version instead: a rewrite of ``<path>`` is stored as
``.spark_aml_bridge/versions/<path>/<time>``, and reads of ``<path>`` through the bridge return
the newest version. Other clients (Azure ML studio, azureml-mlflow) see the first content at
``<path>`` and every later one under the versions folder — nothing is lost.
"""

from __future__ import annotations

import time

BRIDGE_DIR = ".spark_aml_bridge"
VERSIONS_DIR = f"{BRIDGE_DIR}/versions"


def version_path(path: str) -> str:
    return f"{VERSIONS_DIR}/{path}/{time.time_ns():020d}"


def newest_version(path: str, all_paths: list[str]) -> str:
    """The path holding the newest content of ``path`` (itself when never rewritten)."""
    prefix = f"{VERSIONS_DIR}/{path}/"
    versions = [p for p in all_paths if p.startswith(prefix) and "/" not in p[len(prefix) :]]
    return max(versions) if versions else path


def is_bookkeeping(path: str) -> bool:
    return path == BRIDGE_DIR or path.startswith(BRIDGE_DIR + "/")
