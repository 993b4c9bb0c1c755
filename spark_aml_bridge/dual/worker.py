"""The link from a dual store to its mirror: the spool, and the background worker draining it.

The worker waits briefly after the first pending write (so a stream of ``log_metric`` calls
becomes a few ``log_batch`` calls), drains the spool in order, and on a transient failure backs
off (as long as the mirror's Retry-After says, else 0.5 s doubling up to ``max_backoff_seconds``)
and tries again: training never waits for it. At process exit, MLflow's active run is ended (as
MLflow's own exit hook would), then the worker gets ``dual_exit_flush_seconds`` to catch up;
whatever is left stays in the spool for the next ``connect()`` or ``mirror replay``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.dual.failures import Transient, is_transient, short_error
from spark_aml_bridge.dual.mirror import Mirror
from spark_aml_bridge.dual.spool import Spool
from spark_aml_bridge.dual.uri import describe

if TYPE_CHECKING:
    from spark_aml_bridge.dual.store import DualTrackingStore

_log = logging.getLogger(__name__)
_links: list[MirrorLink] = []
_links_lock = threading.Lock()
_atexit_registered = False
_MAINTENANCE_EVERY = 30.0
# While the training thread keeps writing, the worker sends at most this share of the time (its
# requests cost CPU in this process and, on a shared machine, wherever the mirror runs): it
# catches up as soon as training pauses, and a flush (or exit) lifts the limit.
_BUSY_WINDOW = 0.25  # seconds since the last write during which the writer counts as busy
_BUSY_DUTY = 0.2
_BUSY_CHUNK = 1000  # metric points per step while busy
_BUSY_LINGER = 2.0  # while training writes, gather up to this long (fewer, larger requests)


class MirrorLink:
    """One dual store's spool and worker, in one process."""

    # Set when a drain step landed: a later failure starts its backoff afresh (a drain that
    # never runs dry, because training keeps writing, must not keep doubling it).
    _progressed = False

    def __init__(self, store: DualTrackingStore) -> None:
        self.store = store
        self.settings = store.settings
        self.primary_uri = store.primary_uri
        self.mirror_uri = store.mirror_uri
        self.strict = self.settings.strict
        self.spool = Spool.create(
            self.settings.spool_dir,
            self.primary_uri,
            self.mirror_uri,
            max_bytes=self.settings.spool_max_bytes,
        )
        self.origin = self.spool.id
        self._mirror: Mirror | None = None
        self._mirror_lock = threading.Lock()
        self._wake = threading.Event()
        self._flushing = threading.Event()
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False
        self.unspooled = 0  # writes that could not be spooled: the mirror will lack them
        self.started = time.time()
        self._last_write = 0.0
        self._units = 0  # written since the worker last looked (a hint, not exact)
        _register(self)
        self._replay_orphans_in_background()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the mirror store (built lazily: a mirror that is down must not fail the primary) ----
    def mirror(self) -> Mirror:
        if self._mirror is None:
            with self._mirror_lock:
                if self._mirror is None:
                    from spark_aml_bridge.dual.sides import build_store

                    self._mirror = Mirror(
                        self.store.primary,
                        build_store(self.mirror_uri),
                        primary_uri=self.primary_uri,
                        mirror_uri=self.mirror_uri,
                        names=self.settings.names,
                        spool=self.spool,
                        spool_dir=self.settings.spool_dir,
                    )
        return self._mirror

    # -- the training thread's side -------------------------------------------------------------
    def record(
        self, kind: str, run: str | None, payload: dict[str, Any], n: int, bulky: bool
    ) -> None:
        try:
            if run is not None and kind != "update_run":
                # Any run this process writes to (resumed ones too) is reconciled after a crash.
                self.spool.run_opened(run)
            self.spool.append(kind, run, payload, n, bulky=bulky)
        except Exception as exc:  # noqa: BLE001 - a full disk must not fail training
            if self.strict:
                raise
            self.unspooled += 1
            if not self._warned:
                _log.warning(
                    "dual tracking: could not spool a write for the mirror (%s); `spark-aml-bridge "
                    "mirror backfill` copies it from the primary later",
                    exc,
                )
                self._warned = True
            return
        self._last_write = time.monotonic()
        self._units += n or 1
        if self.strict:
            self._drain_strict()
            return
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._wake.set()

    def run_opened(self, run_id: str) -> None:
        try:
            self.spool.run_opened(run_id)
        except Exception:  # noqa: BLE001
            _log.debug("could not record run %s as open", run_id, exc_info=True)

    def run_closed(self, run_id: str) -> None:
        try:
            self.spool.run_closed(run_id)
        except Exception:  # noqa: BLE001
            _log.debug("could not record run %s as closed", run_id, exc_info=True)

    def _drain_strict(self) -> None:
        from mlflow.exceptions import MlflowException

        with self._drain_lock:
            try:
                mirror = self.mirror()
                while True:
                    ops = self.spool.fetch()
                    if not ops:
                        return
                    mirror.apply(ops, strict=True)
            except Exception as exc:
                self._note_error(exc)
                raise MlflowException(
                    f"dual tracking (strict): the mirror {describe(self.mirror_uri)} failed: "
                    f"{short_error(exc)}. The write is on the primary and kept in the spool "
                    f"{self.spool.path} for `spark-aml-bridge mirror replay`."
                ) from exc

    # -- the worker ------------------------------------------------------------------------------
    def _start(self) -> None:
        with _links_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name="spark-aml-bridge-mirror", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        last_maintenance = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(timeout=2.0)
            if self._stop.is_set():
                break
            self._linger()
            self._wake.clear()
            self._units = 0
            try:
                self.drain()
                backoff = 0.0
                if (
                    time.monotonic() - last_maintenance > _MAINTENANCE_EVERY
                    or self._flushing.is_set()
                ):
                    self._maintenance()
                    last_maintenance = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the worker never dies
                if self._closed:
                    return
                self._note_error(exc)
                if not is_transient(exc):
                    _log.warning("dual tracking: mirror worker error", exc_info=True)
                if self._progressed:  # it answered since the last failure: a new streak
                    backoff, self._progressed = 0.0, False
                retry_after = getattr(_root(exc), "retry_after", None)
                if retry_after:  # the mirror said when: neither sooner nor later
                    backoff = min(retry_after, 60.0)
                else:
                    backoff = min(max(backoff * 2, 0.5), self.settings.max_backoff_seconds)
                self._stop.wait(backoff)
                self._wake.set()

    def _busy(self) -> bool:
        return time.monotonic() - self._last_write < _BUSY_WINDOW

    def _linger(self) -> None:
        """Let writes coalesce: a moment, or while training keeps writing small amounts, up to
        _BUSY_LINGER (a flush cuts it short)."""
        if self._flushing.is_set() or not self.settings.linger_seconds:
            return
        self._flushing.wait(self.settings.linger_seconds)
        deadline = time.monotonic() + _BUSY_LINGER - self.settings.linger_seconds
        while (
            not self._flushing.is_set()
            and self._busy()
            and self._units < _BUSY_CHUNK
            and time.monotonic() < deadline
        ):
            self._flushing.wait(0.1)

    def _note_error(self, exc: BaseException) -> None:
        self.spool.last_error = short_error(exc)
        self.spool.last_error_at = time.time()
        _log.debug("dual tracking: mirror not reached: %s", self.spool.last_error)

    def drain(self, *, paced: bool = True) -> int:
        """Apply everything pending now; raises on a transient failure (the rest stays).

        `paced`: while the training thread is writing, pause after each step so the worker
        takes at most _BUSY_DUTY of the time.
        """
        sent = 0
        while True:
            busy = paced and not self._flushing.is_set() and self._busy()
            with self._drain_lock:
                if self._closed:
                    return sent
                mirror = self.mirror()
                ops = self.spool.fetch(max_units=_BUSY_CHUNK if busy else 5000)
                if not ops:
                    return sent
                started = time.monotonic()
                sent += mirror.apply(ops)
                self._progressed = True
                spent = time.monotonic() - started
            if busy:
                self._flushing.wait(spent * (1 - _BUSY_DUTY) / _BUSY_DUTY)

    def _maintenance(self) -> None:
        """Reconcile runs that overflowed the spool; keep the files small."""
        from spark_aml_bridge.dual.sync import Comparer

        with self._drain_lock:
            if self._closed:
                return
            pending, _ = self.spool.pending()
            if pending:
                self.spool.checkpoint()
                return
            runs = self.spool.runs_to_reconcile()
            if runs:
                comparer = Comparer(self.mirror(), artifacts=False)
                for run_id in runs:
                    comparer.run(run_id, fix=True)
                    self.spool.reconciled(run_id)
            self.spool.forget_closed_runs()
            self.spool.checkpoint(truncate=True)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the mirror has every spooled write; False if `timeout` passed first."""
        if self.strict:
            self._drain_strict()
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing.set()
        try:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.set()
            while True:
                pending, _ = self.spool.pending()
                if not pending and not self.spool.runs_to_reconcile():
                    return not self.unspooled
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self._wake.set()
                time.sleep(0.02)
        finally:
            self._flushing.clear()

    def status(self) -> dict[str, Any]:
        info = self.spool.status()
        info["worker_alive"] = bool(self._thread and self._thread.is_alive())
        info["strict"] = self.strict
        info["last_error_at"] = self.spool.last_error_at
        return info

    def close(self, timeout: float) -> None:
        """Bounded flush, stop the worker, keep or remove the spool."""
        if self._closed:
            return
        done = False
        try:
            done = self.flush(timeout) if timeout > 0 else False
        except Exception:  # noqa: BLE001 - strict mode at exit: report below
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
                    "dual tracking: %d write(s) (%d metric points) not yet on the mirror %s are "
                    "kept in %s; the next connect() or `spark-aml-bridge mirror replay` sends them",
                    pending,
                    metrics,
                    describe(self.mirror_uri),
                    self.spool.path,
                )
            if locked:
                self.spool.close(remove_if_done=True)
        finally:
            if locked:
                self._drain_lock.release()
            _unregister(self)

    # -- spools left by processes that are gone -------------------------------------------------
    def _replay_orphans_in_background(self) -> None:
        def replay() -> None:
            from spark_aml_bridge.dual.replay import replay_orphans

            try:
                replay_orphans(self)
            except Exception:  # noqa: BLE001
                _log.info("dual tracking: replaying older spools failed", exc_info=True)

        threading.Thread(target=replay, name="spark-aml-bridge-replay", daemon=True).start()


def _root(exc: BaseException) -> BaseException:
    while not isinstance(exc, Transient) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _register(link: MirrorLink) -> None:
    global _atexit_registered
    with _links_lock:
        _links.append(link)
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True


def _unregister(link: MirrorLink) -> None:
    with _links_lock:
        if link in _links:
            _links.remove(link)


def live_links() -> list[MirrorLink]:
    with _links_lock:
        return list(_links)


def close_all(timeout: float = 10.0) -> None:
    """Close every mirror link of this process (bounded flush each); their stores open new
    spools if used again."""
    for link in live_links():
        link.close(timeout)


def _at_exit() -> None:
    links = live_links()
    if not links:
        return
    # MLflow ends the active run in its own exit hook, which runs after this one (it was
    # registered first): end it now so the run's end reaches the mirror too.
    try:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run()
    except Exception:  # noqa: BLE001
        _log.debug("could not end the active run at exit", exc_info=True)
    for link in links:
        try:
            link.close(link.settings.exit_flush_seconds)
        except Exception:  # noqa: BLE001
            _log.debug("closing the mirror link failed at exit", exc_info=True)
