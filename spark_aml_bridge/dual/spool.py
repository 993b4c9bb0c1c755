"""The durable spool between the training thread and the mirror: one SQLite file per process.

Every write the primary accepted is appended here (one small committed row; WAL journal with
``synchronous=NORMAL`` survives a killed process) before the call returns. A background worker
reads the rows in order, applies them to the mirror and deletes them. A process owns its spool
through an exclusive ``flock`` on ``<spool>.lock``: when it dies the lock goes away and any other
process (the next ``connect()``, ``spark-aml-bridge mirror replay``) may finish the spool.

Tables: ``meta`` (primary, mirror, owner), ``ops`` (the queue), ``idmap`` (primary id -> mirror
id, a cache of the tags on both sides), ``runs`` (runs this process wrote to: open or not, and
whether they must be reconciled from the primary), ``dead`` (operations the mirror refused for
good, kept with the reason).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

VERSION = 1
PREFIX = "spool-"
SUFFIX = ".db"
LOCK_SUFFIX = ".lock"
_SIZE_CHECK_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    run TEXT,
    n INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idmap (
    kind TEXT NOT NULL, primary_id TEXT NOT NULL, mirror_id TEXT NOT NULL,
    PRIMARY KEY (kind, primary_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, open INTEGER NOT NULL DEFAULT 1, reconcile INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, run TEXT, payload TEXT NOT NULL,
    error TEXT NOT NULL, at REAL NOT NULL
);
"""


@dataclass
class Op:
    seq: int
    kind: str
    run: str | None
    n: int
    payload: dict[str, Any]
    attempts: int
    created: float


def default_spool_dir() -> Path:
    """The platform's local scratch disk if its shim names one, else the user's cache dir."""
    try:
        from spark_aml_bridge.platforms import detect_platform

        configured = detect_platform().platform_defaults().get("dual_spool_dir")
    except Exception:  # noqa: BLE001 - detection must never break logging
        configured = None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidate = Path(base) / "spark-aml-bridge" / "spool"
    try:
        candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"spark-aml-bridge-{os.getuid()}" / "spool"


def spool_files(directory: str | os.PathLike[str]) -> list[Path]:
    path = Path(directory)
    if not path.is_dir():
        return []
    return sorted(p for p in path.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _try_lock(lock_path: Path) -> int | None:
    """An fd holding an exclusive lock on `lock_path`, or None when another process holds it."""
    fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def owner_alive(path: Path) -> bool:
    """Whether some process holds the spool's lock (its owner is alive, or someone replays it)."""
    lock_path = Path(str(path) + LOCK_SUFFIX)
    if not lock_path.exists():
        return False
    try:
        fd = os.open(str(lock_path), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock
    return False


def _sidecars(path: Path) -> list[Path]:
    return [Path(str(path) + "-wal"), Path(str(path) + "-shm")]


def _release_lock(path: Path, fd: int) -> None:
    try:
        os.unlink(str(path) + LOCK_SUFFIX)
    except OSError:
        pass
    os.close(fd)


class SpoolCorruptError(Exception):
    """A spool SQLite cannot read; it was moved aside so the other spools replay."""

    def __init__(self, path: Path, moved_to: Path, error: BaseException) -> None:
        self.path = path
        self.moved_to = moved_to
        super().__init__(
            f"spool {path.name} is damaged ({error}); moved to {moved_to.name}. Its writes are "
            "still in the primary: `spark-aml-bridge mirror backfill` copies them to the mirror; "
            "then delete the file"
        )


def quarantine(path: Path, error: BaseException) -> Path:
    """Rename a damaged spool (and its -wal/-shm) out of the replay's way; WARNING says so."""
    moved = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    os.replace(path, moved)
    for sidecar in _sidecars(path):
        if sidecar.exists():
            os.replace(sidecar, Path(str(moved) + sidecar.name[len(path.name) :]))
    _log.warning(
        "dual tracking: spool %s is damaged (%s) and was moved to %s; the other spools are "
        "replayed. Run `spark-aml-bridge mirror backfill` for its runs (the primary has them), "
        "then delete %s",
        path,
        error,
        moved,
        moved,
    )
    return moved


class Spool:
    """One spool file; the process holding its lock is the only one that drains it."""

    def __init__(self, path: Path, lock_fd: int, *, max_bytes: float = float("inf")) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd
        self.max_bytes = max_bytes
        # Both connections write (the training threads append, the worker acks): one Python lock
        # orders all writes, which hands over at once where SQLite's busy handler would sleep.
        # Reads (the worker's fetch) take only the reader connection's lock: WAL readers never
        # block the writer.
        self._wlock = threading.RLock()
        self._rlock = threading.RLock()
        self._w = _connect(path)
        self._w.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints happen on the worker
        self._w.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only
        self._w.executescript(_SCHEMA)
        self._r = _connect(path)
        self._r.execute("PRAGMA wal_autocheckpoint=0")
        self._appends = 0
        self.overflow = False
        self.peak_bytes = self.size_bytes()
        self.counters: dict[str, int] = {
            "ops_spooled": 0,
            "metrics_spooled": 0,
            "ops_applied": 0,
            "metrics_sent": 0,
            "metrics_deduplicated": 0,
            "dead_letters": 0,
            "overflowed_ops": 0,
        }
        self._open_runs: set[str] = set()
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, directory: str | os.PathLike[str], primary: str, mirror: str, **kwargs: Any
    ) -> Spool:
        folder = Path(directory)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0] or "host"
        name = f"{PREFIX}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        path = folder / name
        fd = _try_lock(Path(str(path) + LOCK_SUFFIX))
        if fd is None:  # pragma: no cover - a fresh random name
            raise OSError(f"spool {path} is locked by another process")
        try:
            # Created 0600 before SQLite opens it: its -wal and -shm files take this mode.
            os.close(os.open(str(path), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            spool = cls(path, fd, **kwargs)
        except BaseException:
            _release_lock(path, fd)
            raise
        meta = {
            "version": str(VERSION),
            "primary": primary,
            "mirror": mirror,
            "pid": str(os.getpid()),
            "host": socket.gethostname(),
            "created": str(time.time()),
            "id": path.stem[len(PREFIX) :],
        }
        spool._w.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        for file in (path, *_sidecars(path)):
            if file.exists():
                os.chmod(file, 0o600)
        return spool

    @classmethod
    def adopt(cls, path: Path, **kwargs: Any) -> Spool | None:
        """Take over a spool whose owner is gone; None while its owner (or a replayer) lives."""
        fd = _try_lock(Path(str(path) + LOCK_SUFFIX))
        if fd is None:
            return None
        if not path.exists():  # finished and removed by its owner meanwhile
            os.close(fd)
            return None
        try:
            return cls(path, fd, **kwargs)
        except sqlite3.DatabaseError as exc:
            _release_lock(path, fd)
            raise SpoolCorruptError(path, quarantine(path, exc), exc) from exc
        except BaseException:
            _release_lock(path, fd)
            raise

    @property
    def id(self) -> str:
        return self.path.stem[len(PREFIX) :]

    def meta(self) -> dict[str, str]:
        with self._rlock:
            return dict(self._r.execute("SELECT key, value FROM meta").fetchall())

    def close(self, *, remove_if_done: bool = True) -> bool:
        """Close; delete the files when nothing is left. Returns whether they were removed."""
        removed = False
        if self._lock_fd is None:
            return False
        try:
            done = remove_if_done and self.is_done()
            if not done:
                self.checkpoint(truncate=True)
        except sqlite3.Error:
            done = False
        for conn in (self._w, self._r):
            try:
                conn.close()
            except sqlite3.Error:
                pass
        if done:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(str(self.path) + suffix)
                except FileNotFoundError:
                    pass
            removed = True
        lock_path = Path(str(self.path) + LOCK_SUFFIX)
        if removed:
            try:
                os.unlink(lock_path)
            except FileNotFoundError:
                pass
        os.close(self._lock_fd)
        self._lock_fd = None
        return removed

    def is_done(self) -> bool:
        with self._rlock:
            row = self._r.execute(
                "SELECT (SELECT count(*) FROM ops) + (SELECT count(*) FROM dead) "
                "+ (SELECT count(*) FROM runs WHERE reconcile = 1)"
            ).fetchone()
        return row[0] == 0

    # -- the training thread's side -------------------------------------------------------------
    def append(
        self, kind: str, run: str | None, payload: dict[str, Any], n: int = 0, *, bulky=False
    ) -> int | None:
        """Commit one operation; returns its sequence number.

        `bulky` operations (metric batches) are replaced, while the spool is over its size
        limit, by a mark that the run must be reconciled from the primary: disk stays bounded
        and nothing is lost, because the primary has the data.
        """
        text = json.dumps(payload, separators=(",", ":"))
        with self._wlock:
            self._appends += 1
            if self._appends % _SIZE_CHECK_EVERY == 0:
                self._check_size()
            if bulky and self.overflow and run is not None:
                self._w.execute(
                    "INSERT INTO runs (run, open, reconcile) VALUES (?, 1, 1) "
                    "ON CONFLICT(run) DO UPDATE SET reconcile = 1",
                    (run,),
                )
                self.counters["overflowed_ops"] += 1
                return None
            cursor = self._w.execute(
                "INSERT INTO ops (kind, run, n, payload, created) VALUES (?, ?, ?, ?, ?)",
                (kind, run, n, text, time.time()),
            )
            self.counters["ops_spooled"] += 1
            self.counters["metrics_spooled"] += n
            return cursor.lastrowid

    def run_opened(self, run: str) -> None:
        if run in self._open_runs:
            return
        with self._wlock:
            self._w.execute(
                "INSERT INTO runs (run, open) VALUES (?, 1) "
                "ON CONFLICT(run) DO UPDATE SET open = 1",
                (run,),
            )
            self._open_runs.add(run)

    def run_closed(self, run: str) -> None:
        with self._wlock:
            self._w.execute(
                "INSERT INTO runs (run, open) VALUES (?, 0) "
                "ON CONFLICT(run) DO UPDATE SET open = 0",
                (run,),
            )
        self._open_runs.discard(run)

    def mark_reconcile(self, run: str) -> None:
        with self._wlock:
            self._w.execute(
                "INSERT INTO runs (run, open, reconcile) VALUES (?, 0, 1) "
                "ON CONFLICT(run) DO UPDATE SET reconcile = 1",
                (run,),
            )

    def _check_size(self) -> None:
        size = self.size_bytes()
        self.peak_bytes = max(self.peak_bytes, size)
        if not self.overflow and size > self.max_bytes:
            _log.warning(
                "the mirror's spool %s is over its limit (%.0f MB): metric batches are now "
                "replaced by marks to reconcile their runs from the primary",
                self.path,
                self.max_bytes / 2**20,
            )
            self.overflow = True
        elif self.overflow and size < 0.8 * self.max_bytes:
            self.overflow = False

    # -- the worker's side ----------------------------------------------------------------------
    def fetch(self, max_units: int = 5000, max_rows: int = 2000) -> list[Op]:
        """The oldest operations, up to `max_rows` rows or `max_units` metrics (memory bound)."""
        ops: list[Op] = []
        units = 0
        with self._rlock:
            cursor = self._r.execute(
                "SELECT seq, kind, run, n, payload, attempts, created "
                "FROM ops ORDER BY seq LIMIT ?",
                (max_rows,),
            )
            for seq, kind, run, n, payload, attempts, created in cursor:
                if ops and units + n > max_units:
                    break
                ops.append(Op(seq, kind, run, n, json.loads(payload), attempts, created))
                units += n
            cursor.close()
        return ops

    def ack(self, ops: list[Op]) -> None:
        seqs = [op.seq for op in ops]
        with self._rlock, self._wlock:
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._r.execute(f"DELETE FROM ops WHERE seq IN ({marks})", chunk)
        self.counters["ops_applied"] += len(ops)

    def attempted(self, ops: list[Op]) -> None:
        """Mark operations as sent once: a later retry must first look for their effect."""
        fresh = [op.seq for op in ops if op.attempts == 0]
        with self._rlock, self._wlock:
            for start in range(0, len(fresh), 500):
                chunk = fresh[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._r.execute(
                    f"UPDATE ops SET attempts = attempts + 1 WHERE seq IN ({marks})", chunk
                )
        for op in ops:
            op.attempts += 1

    def dead_letter(self, op: Op, error: str) -> None:
        with self._rlock, self._wlock:
            self._r.execute("BEGIN IMMEDIATE")
            try:
                self._r.execute(
                    "INSERT OR REPLACE INTO dead (seq, kind, run, payload, error, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (op.seq, op.kind, op.run, json.dumps(op.payload), error[:2000], time.time()),
                )
                self._r.execute("DELETE FROM ops WHERE seq = ?", (op.seq,))
                self._r.execute("COMMIT")
            except BaseException:
                self._r.execute("ROLLBACK")
                raise
        self.counters["dead_letters"] += 1

    def runs_to_reconcile(self, *, include_open: bool = False) -> list[str]:
        query = "SELECT run FROM runs WHERE reconcile = 1"
        if include_open:
            query += " OR open = 1"
        with self._rlock:
            return [row[0] for row in self._r.execute(query)]

    def reconciled(self, run: str) -> None:
        with self._rlock, self._wlock:
            self._r.execute("UPDATE runs SET reconcile = 0, open = 0 WHERE run = ?", (run,))

    def forget_closed_runs(self) -> None:
        with self._rlock, self._wlock:
            self._r.execute("DELETE FROM runs WHERE open = 0 AND reconcile = 0")

    # -- id map (a cache: the tags on both sides are the truth) ------------------------------
    def idmap_get(self, kind: str, primary_id: str) -> str | None:
        with self._rlock:
            row = self._r.execute(
                "SELECT mirror_id FROM idmap WHERE kind = ? AND primary_id = ?", (kind, primary_id)
            ).fetchone()
        return row[0] if row else None

    def idmap_put(self, kind: str, primary_id: str, mirror_id: str) -> None:
        with self._rlock, self._wlock:
            self._r.execute(
                "INSERT OR REPLACE INTO idmap VALUES (?, ?, ?)", (kind, primary_id, mirror_id)
            )

    # -- size and status ----------------------------------------------------------------------
    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(str(self.path) + suffix).st_size
            except FileNotFoundError:
                pass
        return total

    def pending(self) -> tuple[int, int]:
        """(operations, metrics) waiting for the mirror."""
        with self._rlock:
            ops, units = self._r.execute("SELECT count(*), coalesce(sum(n), 0) FROM ops").fetchone()
        return int(ops), int(units)

    def checkpoint(self, *, truncate: bool = False) -> None:
        """Move the WAL into the database; when idle, shrink both (bounded disk)."""
        size = self.size_bytes()
        self.peak_bytes = max(self.peak_bytes, size)
        with self._rlock, self._wlock:
            mode = "TRUNCATE" if truncate else "PASSIVE"
            self._r.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            if truncate:
                self._r.execute("PRAGMA incremental_vacuum").fetchall()

    def status(self) -> dict[str, Any]:
        return describe(self.path, self)


def describe(path: Path, spool: Spool | None = None) -> dict[str, Any]:
    """What `mirror status` shows about one spool file (read-only when not ours)."""
    conn = spool._r if spool is not None else None
    lock = spool._rlock if spool is not None else threading.Lock()
    own = conn is None
    if own:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    assert conn is not None
    try:
        with lock:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            ops, units, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(n), 0), min(created) FROM ops"
            ).fetchone()
            dead = conn.execute("SELECT count(*) FROM dead").fetchone()[0]
            reconcile = conn.execute("SELECT count(*) FROM runs WHERE reconcile = 1").fetchone()[0]
            open_runs = conn.execute("SELECT count(*) FROM runs WHERE open = 1").fetchone()[0]
            last_dead = conn.execute(
                "SELECT kind, run, error FROM dead ORDER BY seq DESC LIMIT 3"
            ).fetchall()
    finally:
        if own:
            conn.close()
    size = 0
    for suffix in ("", "-wal"):
        try:
            size += os.stat(str(path) + suffix).st_size
        except FileNotFoundError:
            pass
    info: dict[str, Any] = {
        "spool": str(path),
        "primary": meta.get("primary"),
        "mirror": meta.get("mirror"),
        "owner_pid": int(meta.get("pid", "0") or 0),
        "owner_host": meta.get("host"),
        "owner_alive": owner_alive(path) if spool is None else True,
        "pending_ops": int(ops),
        "pending_metrics": int(units),
        "oldest_pending_seconds": round(time.time() - oldest, 1) if oldest else 0.0,
        "dead_letters": int(dead),
        "runs_to_reconcile": int(reconcile),
        "open_runs": int(open_runs),
        "size_bytes": size,
        "recent_dead_letters": [
            {"kind": kind, "run": run, "error": error[:300]} for kind, run, error in last_dead
        ],
    }
    if spool is not None:
        info["peak_size_bytes"] = max(spool.peak_bytes, size)
        info["counters"] = dict(spool.counters)
        info["overflow"] = spool.overflow
        info["last_error"] = spool.last_error
    return info
