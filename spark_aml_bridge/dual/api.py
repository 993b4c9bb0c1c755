"""Dual tracking operations for the CLI and notebooks: status, replay, verify, backfill.

Replay itself (one spool, or the orphans of a live link) is ``replay.py``; this module finds
the spools and sends each to the right replayer (dual tracking, or workspace mode's durable
writes).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_aml_bridge.dual.failures import short_error
from spark_aml_bridge.dual.mirror import Mirror
from spark_aml_bridge.dual.replay import ReplayReport, adopt, failed, replay_spool
from spark_aml_bridge.dual.sides import build_store, stores_for
from spark_aml_bridge.dual.spool import Spool, describe, spool_files
from spark_aml_bridge.dual.sync import Comparer, Difference

__all__ = [
    "ReplayReport",
    "Scope",
    "backfill",
    "compare",
    "current_pair",
    "replay",
    "replay_spool",
    "resolve_spool_dir",
    "status",
    "stores_for",
    "verify",
]

_log = logging.getLogger(__name__)


def resolve_spool_dir(spool_dir: str | Path | None) -> Path:
    if spool_dir:
        return Path(spool_dir).expanduser()
    from spark_aml_bridge.dual.settings import DualSettings

    return DualSettings.current().spool_dir


def status(spool_dir: str | Path | None = None) -> dict[str, Any]:
    """Every spool in the directory: pending operations and metrics, size, dead letters."""
    from spark_aml_bridge.dual.worker import live_links

    folder = resolve_spool_dir(spool_dir)
    own = {link.spool.path: link for link in live_links()}
    spools = []
    for path in spool_files(folder):
        try:
            link = own.get(path)
            spools.append(link.status() if link is not None else describe(path))
        except Exception as exc:  # noqa: BLE001 - a spool being removed right now
            if path.exists():
                spools.append({"spool": str(path), "error": short_error(exc)})
    totals = {
        key: sum(s.get(key, 0) for s in spools)
        for key in ("pending_ops", "pending_metrics", "dead_letters", "size_bytes")
    }
    return {"spool_dir": str(folder), "spools": spools, "totals": totals}


def replay(
    spool_dir: str | Path | None = None,
    *,
    timeout: float | None = 600.0,
    primary_uri: str | None = None,
    mirror_uri: str | None = None,
) -> ReplayReport:
    """Replay every spool in the directory whose process is gone (see the module docstring)."""
    from spark_aml_bridge.dual.settings import DualSettings

    folder = resolve_spool_dir(spool_dir)
    settings = DualSettings.current()
    report = ReplayReport()
    deadline = None if timeout is None else time.monotonic() + timeout
    stores: dict[tuple[str, str], tuple[Any, Any]] = {}
    from spark_aml_bridge.progress import Progress

    progress = Progress("mirror replay", total=0, unit="write")
    for path in spool_files(folder):
        spool = adopt(path, report)
        if spool is None:
            if path.exists() and str(path) not in report.damaged:
                report.skipped_live.append(str(path))
            continue
        try:
            meta = spool.meta()
            pair = (meta.get("primary", ""), meta.get("mirror", ""))
            if _replayed_as_durable_writes(spool, pair, mirror_uri, stores, deadline, report):
                continue
            if (primary_uri and pair[0] != primary_uri) or (mirror_uri and pair[1] != mirror_uri):
                spool.close(remove_if_done=False)
                continue
            if pair not in stores:
                stores[pair] = stores_for(*pair)
            progress.add_total(spool.pending()[0])
            replay_spool(
                spool,
                *stores[pair],
                primary_uri=pair[0],
                mirror_uri=pair[1],
                spool_dir=folder,
                names=settings.names,
                deadline=deadline,
                report=report,
                progress=progress,
            )
        except Exception as exc:  # noqa: BLE001 - report it, go on with the other spools
            failed(spool, path, exc, report)
    progress.close()
    return report


def _replayed_as_durable_writes(
    spool: Spool,
    pair: tuple[str, str],
    mirror_uri: str | None,
    stores: dict[tuple[str, str], tuple[Any, Any]],
    deadline: float | None,
    report: ReplayReport,
) -> bool:
    """A spool of workspace mode's durable writes (azureml/durable_link.py): replayed to its
    workspace, no primary involved. False for a dual-tracking spool."""
    from spark_aml_bridge.azureml.durable_link import DURABLE_MARK, replay_durable_spool

    if pair[0] != DURABLE_MARK:
        return False
    if mirror_uri and pair[1] != mirror_uri:
        spool.close(remove_if_done=False)
        return True
    if pair not in stores:
        stores[pair] = (None, build_store(pair[1]))
    replay_durable_spool(spool, stores[pair][1], deadline=deadline, report=report)
    return True


@dataclass
class Scope:
    """What verify/backfill look at: runs, experiments (by id or name), or every experiment."""

    run_ids: list[str] = field(default_factory=list)
    experiment_ids: list[str] = field(default_factory=list)
    experiment_names: list[str] = field(default_factory=list)
    all_experiments: bool = False


def compare(
    scope: Scope,
    *,
    primary_uri: str,
    mirror_uri: str,
    fix: bool,
    artifacts: bool = True,
    names: Any = None,
) -> list[Difference]:
    from mlflow.entities import ViewType

    from spark_aml_bridge.dual.settings import DualSettings

    primary, mirror = stores_for(primary_uri, mirror_uri)
    settings = DualSettings.current()
    applier = Mirror(
        primary,
        mirror,
        primary_uri=primary_uri,
        mirror_uri=mirror_uri,
        names=names or settings.names,
        spool_dir=settings.spool_dir,
        replaying=True,
    )
    from spark_aml_bridge.progress import Progress

    # Runs are counted as each experiment's list arrives: the total grows, so does the ETA.
    progress = Progress(f"mirror {'backfill' if fix else 'verify'}", total=0, unit="run")
    comparer = Comparer(applier, artifacts=artifacts, progress=progress)
    experiment_ids = list(scope.experiment_ids)
    for name in scope.experiment_names:
        experiment = primary.get_experiment_by_name(name)
        if experiment is None:
            from spark_aml_bridge.errors import ConfigError

            raise ConfigError(
                f"the primary has no experiment named {name!r}",
                "check the name (Databricks names are paths such as /Users/<you>/<name>)",
            )
        experiment_ids.append(experiment.experiment_id)
    if scope.all_experiments:
        token = None
        while True:
            page = primary.search_experiments(
                view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            experiment_ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
    diffs: list[Difference] = []
    seen: set[str] = set()
    with progress:
        progress.add_total(len(set(scope.run_ids)))
        for experiment_id in dict.fromkeys(experiment_ids):
            diffs += comparer.experiment(experiment_id, fix=fix)
        for run_id in scope.run_ids:
            if run_id in seen:
                continue
            seen.add(run_id)
            run = primary.get_run(run_id)
            parent = run.data.tags.get("mlflow.parentRunId")
            if fix and parent:
                applier.run_id(parent, force=True)
            diffs += comparer.run(run_id, fix=fix, run=run)
            progress.advance()
    return diffs


def verify(scope: Scope, *, primary_uri: str, mirror_uri: str, **kwargs: Any) -> list[Difference]:
    """Every difference between the primary and the mirror in `scope` (nothing is changed)."""
    return compare(scope, primary_uri=primary_uri, mirror_uri=mirror_uri, fix=False, **kwargs)


def backfill(scope: Scope, *, primary_uri: str, mirror_uri: str, **kwargs: Any) -> list[Difference]:
    """Copy to the mirror what it lacks in `scope`; returns what was (or could not be) fixed."""
    return compare(scope, primary_uri=primary_uri, mirror_uri=mirror_uri, fix=True, **kwargs)


def current_pair() -> tuple[str, str] | None:
    """(primary, mirror) of the dual tracking URI MLflow currently uses, if any."""
    import mlflow

    from spark_aml_bridge.dual.uri import SCHEME, parse_dual_uri

    uri = mlflow.get_tracking_uri()
    if uri.startswith(SCHEME + ":"):
        return parse_dual_uri(uri)
    return None
