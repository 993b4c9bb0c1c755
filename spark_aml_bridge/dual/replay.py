"""Replaying spools left by processes that are gone.

A spool is replayed only by the process holding its lock, so a live process's
spool is left to that process. Replaying a spool of a process that is gone applies its pending
operations in order (creates look for their earlier attempt first; metric batches that were sent
before are de-duplicated against the mirror), then reconciles every run that process had open or
that overflowed the spool by comparing it with the primary and copying what is missing (this
also covers a write the process made on the primary but was killed before spooling). A run the
process never ended stays as it is on the primary (e.g. RUNNING). The spool file is removed
when nothing is left; operations the mirror refused for good stay in it as dead letters.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.dual.failures import is_transient, short_error
from spark_aml_bridge.dual.mirror import Mirror
from spark_aml_bridge.dual.spool import Spool, SpoolCorruptError, quarantine, spool_files
from spark_aml_bridge.dual.sync import Comparer, Difference

if TYPE_CHECKING:
    from spark_aml_bridge.dual.worker import MirrorLink

_log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    remaining: dict[str, int] = field(default_factory=dict)
    reconciled_runs: int = 0
    fixed: list[Difference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # quarantined spools (also in errors)

    @property
    def complete(self) -> bool:
        return not self.remaining and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "removed": self.removed,
            "skipped_live": self.skipped_live,
            "remaining": self.remaining,
            "reconciled_runs": self.reconciled_runs,
            "fixed": [str(d) for d in self.fixed],
            "errors": self.errors,
            "damaged": self.damaged,
        }


def replay_spool(
    spool: Spool,
    primary: Any,
    mirror: Any,
    *,
    primary_uri: str,
    mirror_uri: str,
    spool_dir: Path,
    names: Any = None,
    deadline: float | None = None,
    report: ReplayReport,
    progress: Any = None,
) -> None:
    """Drain one adopted spool, reconcile its runs, and remove it when done."""
    applier = Mirror(
        primary,
        mirror,
        primary_uri=primary_uri,
        mirror_uri=mirror_uri,
        names=names,
        spool=spool,
        spool_dir=spool_dir,
        replaying=True,
    )
    name = str(spool.path)
    report.replayed.append(name)
    errors_before = len(report.errors)  # another spool's failure must not stop this one
    try:
        backoff = 0.5
        while True:
            ops = spool.fetch()
            if not ops:
                break
            try:
                applier.apply(ops)
                backoff = 0.5
                if progress is not None:
                    progress.advance(len(ops))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if deadline is not None and time.monotonic() + backoff > deadline:
                    report.errors.append(f"{name}: mirror unavailable: {short_error(exc)}")
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        if len(report.errors) == errors_before:
            comparer = Comparer(applier, artifacts=True)
            for run_id in spool.runs_to_reconcile(include_open=True):
                try:
                    report.fixed += [d for d in comparer.run(run_id, fix=True) if d.fixed]
                except Exception as exc:  # noqa: BLE001
                    report.errors.append(f"{name}: reconciling run {run_id}: {short_error(exc)}")
                    continue
                spool.reconciled(run_id)
                report.reconciled_runs += 1
            spool.forget_closed_runs()
    finally:
        pending, _ = spool.pending()
        if pending:
            report.remaining[name] = pending
        if spool.close(remove_if_done=True):
            report.removed.append(name)


def adopt(path: Path, report: ReplayReport) -> Spool | None:
    """The spool at `path` if its owner is gone; a damaged one is quarantined and reported."""
    try:
        return Spool.adopt(path)
    except SpoolCorruptError as exc:
        report.damaged.append(str(path))
        report.errors.append(str(exc))
        return None


def failed(spool: Spool, path: Path, exc: Exception, report: ReplayReport) -> None:
    spool.close(remove_if_done=False)
    if isinstance(exc, sqlite3.DatabaseError):  # damaged past its header: found while reading
        report.damaged.append(str(path))
        report.errors.append(str(SpoolCorruptError(path, quarantine(path, exc), exc)))
    else:
        report.errors.append(f"{path}: {short_error(exc)}")


def replay_orphans(link: MirrorLink) -> ReplayReport:
    """In a new dual store's process: replay spools of the same pair left by dead processes."""
    folder = link.settings.spool_dir
    report = ReplayReport()
    for path in spool_files(folder):
        if path == link.spool.path:
            continue
        spool = adopt(path, report)
        if spool is None:
            continue
        try:
            meta = spool.meta()
            if (meta.get("primary"), meta.get("mirror")) != (link.primary_uri, link.mirror_uri):
                spool.close(remove_if_done=False)
                continue
            _log.info("dual tracking: replaying %s, left by process %s", path, meta.get("pid"))
            replay_spool(
                spool,
                link.store.primary,
                link.mirror().store,
                primary_uri=link.primary_uri,
                mirror_uri=link.mirror_uri,
                spool_dir=folder,
                names=link.settings.names,
                deadline=time.monotonic() + 600,
                report=report,
            )
        except Exception as exc:  # noqa: BLE001
            failed(spool, path, exc, report)
    for error in report.errors:
        _log.warning("dual tracking: replaying a spool left behind: %s", error)
    return report
