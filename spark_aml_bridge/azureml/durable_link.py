"""Durable writes in workspace mode: the spool and worker of dual tracking, aimed at the workspace.

One mechanism for both modes: the same SQLite spool (``dual/spool.py``) and the same background
worker (``dual/worker.py``: coalescing, Retry-After, backoff, bounded exit flush, pacing while
training writes). What differs is the applier: the workspace is the only side, so run ids are the
workspace's own (no id map), and writes are sent straight to it — metrics, params and tags as
``log-batch`` JSON without MLflow's blind POST retries; a batch that was sent before (its response
lost) is first compared with the run's metric history, so a replay never duplicates a point.

Spools of this mode carry ``primary = durable-writes`` in their meta table; ``mirror replay`` and
the next ``connect()`` replay them like dual-tracking spools.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.dual.failures import is_transient, short_error
from spark_aml_bridge.dual.mirror import Mirror
from spark_aml_bridge.dual.spool import Spool, spool_files
from spark_aml_bridge.dual.worker import MirrorLink, _unregister
from spark_aml_bridge.rest import call_once

if TYPE_CHECKING:
    from spark_aml_bridge.dual.replay import ReplayReport

_log = logging.getLogger(__name__)

DURABLE_MARK = "durable-writes"  # the spool's "primary": there is none, the workspace is all


@dataclass(frozen=True)
class DurableSettings:
    enabled: bool
    spool_dir: Path
    read_wait_seconds: float = 30.0
    exit_flush_seconds: float = 10.0
    create_run_budget_seconds: float = 120.0
    # What the shared worker reads (tuned, not settings).
    strict: bool = False
    linger_seconds: float = 0.2
    max_backoff_seconds: float = 10.0
    spool_max_bytes: float = float("inf")  # no primary to reconcile from: never drop a batch


_ENV_KEYS = (
    "SPARK_AML_BRIDGE_MODE",
    "SPARK_AML_BRIDGE_DURABLE_WRITES",
    "SPARK_AML_BRIDGE_DURABLE_READ_WAIT_SECONDS",
    "SPARK_AML_BRIDGE_DURABLE_EXIT_FLUSH_SECONDS",
    "SPARK_AML_BRIDGE_CREATE_RUN_BUDGET_SECONDS",
    "SPARK_AML_BRIDGE_DUAL_SPOOL_DIR",
)
_cache: dict[tuple[str | None, ...], DurableSettings] = {}
_cache_lock = threading.Lock()


def durable_settings() -> DurableSettings:
    """The durable-writes settings from env / Spark conf (what connect() exported, or zero code);
    resolved again only when one of their env vars changes (this runs on every write)."""
    import os

    key = tuple(os.environ.get(name) for name in _ENV_KEYS)
    found = _cache.get(key)
    if found is not None:
        return found
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.dual.spool import default_spool_dir

    config = resolve_config({})
    spool_dir = config.dual_spool_dir
    settings = DurableSettings(
        enabled=config.durable_writes and config.mode == "workspace",
        spool_dir=Path(spool_dir).expanduser() if spool_dir else default_spool_dir(),
        read_wait_seconds=config.durable_read_wait_seconds,
        exit_flush_seconds=config.durable_exit_flush_seconds,
        create_run_budget_seconds=config.create_run_budget_seconds,
    )
    with _cache_lock:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = settings
    return settings


class _Synchronous:
    """The workspace store's synchronous methods (those of the class under its durable one), for
    the worker: the worker must send, never spool again."""

    def __init__(self, store: Any) -> None:
        self._store = store
        synchronous = getattr(store, "synchronous", None)
        self._base = synchronous() if callable(synchronous) else None

    def __getattr__(self, name: str) -> Any:
        if self._base is not None:
            try:
                return getattr(self._base, name)
            except AttributeError:  # an instance attribute, e.g. RestStore's get_host_creds
                pass
        return getattr(self._store, name)


class WorkspaceWriter(Mirror):
    """Applies spooled operations to the workspace itself: ids are the workspace's own."""

    def __init__(self, store: Any, spool: Spool | None) -> None:
        super().__init__(
            None,
            _Synchronous(store),
            primary_uri=DURABLE_MARK,
            mirror_uri=getattr(store, "store_uri", "azureml:"),
            spool=spool,
            replaying=True,
        )

    # No id map: the spool holds the workspace's ids.
    def run_id(self, primary_id: str, **_: Any) -> str:  # type: ignore[override]
        return primary_id

    def lookup_run(self, primary_id: str, experiment_id: str | None = None) -> str | None:
        return primary_id

    def model_id(self, primary_id: str, **_: Any) -> str:  # type: ignore[override]
        return primary_id

    def experiment_id(self, primary_id: str, **_: Any) -> str:  # type: ignore[override]
        return str(primary_id)

    def translate_tags(self, tags: dict[str, str], **_: Any) -> dict[str, str]:
        return dict(tags)

    def _can_post_directly(self) -> bool:
        return True  # the workspace speaks MLflow REST: log-batch JSON, no blind retries

    def _apply_update_run(self, run_id: str, payload: dict[str, Any], age: float) -> None:
        """The run's end (status, end time, name), sent once per attempt (idempotent)."""
        body: dict[str, Any] = {"run_id": run_id, "run_uuid": run_id, "status": payload["status"]}
        if payload.get("end") is not None:
            body["end_time"] = int(payload["end"])
        if payload.get("name"):
            body["run_name"] = payload["name"]
        call_once(
            self.store.get_host_creds(),
            "/api/2.0/mlflow/runs/update",
            "POST",
            json_body=body,
            said="the workspace answered HTTP {status} to runs/update",
        )


@dataclass(frozen=True)
class _LinkSpec:
    """What MirrorLink's constructor reads from its store."""

    settings: DurableSettings
    primary_uri: str
    mirror_uri: str


class DurableLink(MirrorLink):
    """One workspace store's spool and worker in one process (the dual worker, reused)."""

    def __init__(self, store: Any, settings: DurableSettings) -> None:
        self._workspace_store = store
        # MirrorLink.__init__ reads a dual store's settings and URIs: hand it this mode's.
        super().__init__(_LinkSpec(settings, DURABLE_MARK, store.store_uri))  # type: ignore[arg-type]
        self.store = store

    def mirror(self) -> Any:
        if self._mirror is None:
            with self._mirror_lock:
                if self._mirror is None:
                    self._mirror = WorkspaceWriter(self._workspace_store, self.spool)
        return self._mirror

    # -- the training thread's side -------------------------------------------------------------
    def record(  # type: ignore[override]
        self, kind: str, run: str | None, payload: dict[str, Any], n: int = 0, bulky: bool = False
    ) -> None:
        """Commit one write; raises if it cannot be spooled (the store then sends it itself)."""
        if run is not None and kind != "update_run":
            self.spool.run_opened(run)
        self.spool.append(kind, run, payload, n)
        self._last_write = time.monotonic()
        self._units += n or 1
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._wake.set()

    def pending_for_run(self, run_id: str) -> int:
        spool = self.spool
        with spool._rlock:
            return int(
                spool._r.execute("SELECT count(*) FROM ops WHERE run = ?", (run_id,)).fetchone()[0]
            )

    def wait_for_run(self, run_id: str | None, timeout: float) -> bool:
        """Wait until the workspace has every pending write of `run_id` (every run when None);
        False if `timeout` passed first (the caller reads anyway)."""
        if self._closed:
            return True

        def pending() -> int:
            return self.spool.pending()[0] if run_id is None else self.pending_for_run(run_id)

        if not pending():
            return True
        deadline = time.monotonic() + timeout
        self._flushing.set()  # no lingering, no pacing: someone waits
        try:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            while True:
                self._wake.set()
                if not pending():
                    return True
                if time.monotonic() >= deadline:
                    _log.warning(
                        "durable writes: %s still has writes on their way to the workspace after "
                        "%.0f s (last error: %s); reading what the workspace has now",
                        f"run {run_id}" if run_id else "this process",
                        timeout,
                        self.spool.last_error or "none",
                    )
                    return False
                time.sleep(0.02)
        finally:
            self._flushing.clear()

    # -- the worker ------------------------------------------------------------------------------
    _retrying = False  # the last attempt failed: its writes already wait, do not linger again

    def _note_error(self, exc: BaseException) -> None:
        self._retrying = True
        super()._note_error(exc)

    def _linger(self) -> None:
        if not self._retrying:
            super()._linger()

    def drain(self, *, paced: bool = True) -> int:
        # A retry sends what already waited out a failure: no pacing for it either.
        sent = super().drain(paced=paced and not self._retrying)
        self._retrying = False
        return sent

    def _maintenance(self) -> None:
        with self._drain_lock:
            if self._closed:
                return
            pending, _ = self.spool.pending()
            if pending:
                self.spool.checkpoint()
                return
            self.spool.forget_closed_runs()
            self.spool.checkpoint(truncate=True)

    def close(self, timeout: float) -> None:
        """Bounded flush, stop the worker, keep the spool if anything is left (for replay)."""
        if self._closed:
            return
        done = False
        try:
            done = self.flush(timeout) if timeout > 0 else False
        except Exception:  # noqa: BLE001
            done = False
        self._stop.set()
        self._wake.set()
        self._flushing.set()
        locked = self._drain_lock.acquire(timeout=2.0)
        self._closed = True
        try:
            pending, metrics = self.spool.pending()
            if pending and not done:
                _log.warning(
                    "durable writes: %d write(s) (%d metric points) not yet in the workspace are "
                    "kept in %s; the next connect() or `spark-aml-bridge mirror replay` sends them",
                    pending,
                    metrics,
                    self.spool.path,
                )
            if locked:
                self.spool.close(remove_if_done=True)
        finally:
            if locked:
                self._drain_lock.release()
            _unregister(self)

    def status(self) -> dict[str, Any]:
        info = super().status()
        info["mode"] = "durable writes"
        return info

    def _replay_orphans_in_background(self) -> None:
        def replay() -> None:
            try:
                report = replay_orphans(
                    self._workspace_store, self.settings.spool_dir, skip=self.spool.path
                )
                for error in report.errors:
                    _log.warning("durable writes: replaying a spool left behind: %s", error)
            except Exception:  # noqa: BLE001
                _log.info("durable writes: replaying older spools failed", exc_info=True)

        threading.Thread(target=replay, name="spark-aml-bridge-replay", daemon=True).start()


# -- replay: spools of processes that are gone ---------------------------------------------------
def replay_durable_spool(
    spool: Spool, store: Any, *, deadline: float | None, report: ReplayReport
) -> None:
    """Send what a dead process left in `spool` (in order, de-duplicated), remove it when done."""
    writer = WorkspaceWriter(store, spool)
    name = str(spool.path)
    report.replayed.append(name)
    try:
        backoff = 0.5
        while True:
            ops = spool.fetch()
            if not ops:
                break
            try:
                writer.apply(ops)
                backoff = 0.5
            except Exception as exc:
                if not is_transient(exc):
                    raise
                wait = getattr(exc, "retry_after", None) or backoff
                if deadline is not None and time.monotonic() + wait > deadline:
                    report.errors.append(f"{name}: workspace unavailable: {short_error(exc)}")
                    break
                time.sleep(wait)
                backoff = min(backoff * 2, 10.0)
        spool.forget_closed_runs()
    finally:
        pending, _ = spool.pending()
        if pending:
            report.remaining[name] = pending
        if spool.close(remove_if_done=True):
            report.removed.append(name)


def replay_orphans(
    store: Any, spool_dir: Path, *, skip: Path | None = None, timeout: float = 600.0
) -> ReplayReport:
    """Replay the durable spools of `store`'s workspace left in `spool_dir` by dead processes."""
    from spark_aml_bridge.dual.replay import ReplayReport

    report = ReplayReport()
    deadline = time.monotonic() + timeout
    for path in spool_files(spool_dir):
        if path == skip:
            continue
        spool = Spool.adopt(path)
        if spool is None:
            continue
        try:
            meta = spool.meta()
            if (meta.get("primary"), meta.get("mirror")) != (DURABLE_MARK, store.store_uri):
                spool.close(remove_if_done=False)
                continue
            _log.info("durable writes: replaying %s, left by process %s", path, meta.get("pid"))
            replay_durable_spool(spool, store, deadline=deadline, report=report)
        except Exception as exc:  # noqa: BLE001
            report.errors.append(f"{path}: {short_error(exc)}")
            spool.close(remove_if_done=False)
    return report
