"""The base every part of the SQLite store subclasses: the connection (one transaction per store
method), the clock leases are judged on, the translation of driver errors, and what every part reads
the same way (a mutex's state, why a guarded write matched nothing, a file replaced under a lease).
The file itself: ``files``; rows into records: ``rows``."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import ConfigError, HeldOnHostError, NotOwnerError, StoreError, StoreUnavailableError
from ...models import AppliedStep, MutexState, SchemaState, parse_iso
from ...redact import mask_url
from ..common import loss_error
from ..protocols import IfMissing
from ..steps import HISTORY_RETENTION_S, LOG_RETENTION_S
from . import waiters
from .files import (
    ADDED_COLUMNS,
    abandon,
    carry_fence,
    damaged_error,
    file_marks,
    has_column,
    has_tables,
    identity,
    open_file,
    raise_fence,
    read_only_error,
)
from .guard import Beacon, HostGuard
from .rows import COLUMNS, SLOT_COLUMNS, mutex_state, with_slots
from .statements import Now, Operation, T, row, rows, run_sync
from .times import boot_clock_ns, boot_id


class SQLiteBase:
    """What every part of the SQLite store shares: one connection, its lock, the lease clock.

    ``clock_ns`` replaces the boot clock in tests, which then move time instead of sleeping.
    """

    clock = "host"  # leases are judged on this host's boot clock
    expires_by_ttl = False  # old log entries are pruned by the writers themselves
    history_retention_s: float = HISTORY_RETENTION_S  # (open_store sets the configured one)

    def __init__(self, path: Path, url: str, *, log_retention_s: float = LOG_RETENTION_S,
                 clock_ns: Callable[[], int] | None = None, if_missing: IfMissing = "create") -> None:
        self.log_retention_s = log_retention_s
        self.if_missing: IfMissing = if_missing
        self.path = path
        self.url = mask_url(url)
        self._boot = boot_id()
        self._now_ns = clock_ns or boot_clock_ns(self._boot)
        self._lock = threading.Lock()  # one connection, shared by the caller and a renewal thread
        self._prepared: tuple[SchemaState | None] | None = None
        self._opened: _Opened | None = None  # on first use: a refused input never creates a file
        self.guard = HostGuard(path)

    def _open_once(self) -> _Opened:
        if self._opened is not None:  # (always so inside a transaction, which holds the lock)
            return self._opened
        with self._lock:
            if self._opened is None:
                missing = self.if_missing == "empty" and not self.path.exists()
                db, read_only = open_file(self.path, self.url, self.if_missing)
                # Files made before a column existed get it on their first writable open; read-only,
                # they read it as NULL (and miss the tables that came with it).
                columns = {column: column if has_column(db, table, column) else f"NULL AS {column}"
                           for table, column, _ in ADDED_COLUMNS if table == "mutexes"}
                self._opened = _Opened(db, read_only, columns, has_tables(db, "slots", "once_markers"),
                                       has_tables(db, "history"), has_tables(db, "waiters"),
                                       marks := file_marks(self.path), identity(marks), missing)
            return self._opened

    @property
    def missing(self) -> bool:
        """The store file does not exist (yet), and it is read as empty (``if_missing="empty"``).
        Asking opens nothing (a file that is not a store is the first read's error)."""
        opened = self._opened
        if opened is not None:
            return opened.missing
        return self.if_missing == "empty" and not self.path.exists()

    @property
    def _file(self) -> str:
        """Which file (database, -wal, -shm) the connection has: the host guard's beacons carry it."""
        return self._open_once().file

    def _replaced(self) -> bool:
        """The path no longer names the files this connection has open (removed, moved, replaced)."""
        opened = self._opened
        return opened is not None and not opened.read_only and file_marks(self.path) != opened.marks

    def _only_wal_removed(self) -> bool:
        """The database and the -shm are still the ones this connection has; its -wal is gone. Its
        rows are then in that -wal alone, and nobody else can open the file until it lets go."""
        now, opened = file_marks(self.path), self._opened
        return now is not None and opened is not None and opened.marks is not None and \
            (now[0], now[2]) == (opened.marks[0], opened.marks[2]) and now[1] != opened.marks[1]

    def _follow_path(self) -> None:
        """Before taking a lease: a file replaced under a long-lived connection is left for the one at
        the path. The old connection is never closed: closing would checkpoint its -wal into whatever
        file now has the name."""
        if self._replaced():
            with self._lock:
                if self._opened is not None:
                    abandon(self._opened.db)
                    self._opened = None

    @property
    def _db(self) -> sqlite3.Connection:
        return self._open_once().db

    @property
    def read_only(self) -> bool:
        return self._open_once().read_only

    @property
    def _columns(self) -> dict[str, str]:
        return self._open_once().columns

    @property
    def _has_slots(self) -> bool:
        return self._open_once().has_slots

    @property
    def _has_history(self) -> bool:
        return self._open_once().has_history

    @property
    def _has_waiters(self) -> bool:
        return self._open_once().has_waiters

    @classmethod
    def from_url(cls, url: str, *, log_retention_s: float = LOG_RETENTION_S, if_missing: IfMissing = "create") -> Any:
        rest = url.split(":", 1)[1]
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority not in ("", "localhost"):
                raise ConfigError(f"store URL {mask_url(url)!r} names a host; SQLite files are local",
                                  hint="use sqlite:///absolute/path.db")
            rest = "/" + rest.lstrip("/")
        path = rest.split("?", 1)[0]
        if path in ("", "/"):
            raise ConfigError(f"store URL {mask_url(url)!r} has no file path", hint="use sqlite:///absolute/path.db")
        return cls(Path(path), url, log_retention_s=log_retention_s, if_missing=if_missing)

    def close(self) -> None:
        # A renewal thread may still be inside a statement (blocked on a busy database); closing the
        # connection under it would crash it, and the process is about to exit anyway.
        if self._opened is not None and self._lock.acquire(timeout=1.0):
            try:
                self._opened.db.close()
            finally:
                self._lock.release()

    def _transaction(self, write: bool = True) -> Transaction:
        return Transaction(self._db, self._lock, self.url, write)

    # -- what the parts share: a mutex's state read in the caller's transaction, why a guarded write
    #    matched nothing, a file that is no longer the one at the path -----------------------------------

    @property
    def _select(self) -> str:
        """The columns to read (a read-only file from before a column existed reads it as NULL)."""
        return ", ".join([COLUMNS.replace("execMode", self._columns["execMode"]),
                          *(self._columns[c] for c in SLOT_COLUMNS)])

    def _params(self, mutex_id: str, node_id: str, fence: int | None, now_ns: int) -> dict[str, Any]:
        return {"id": mutex_id, "node": node_id, "fence": fence, "boot": self._boot, "now_ns": now_ns}

    def _now(self) -> Now:
        return Now(self._now_ns(), datetime.now(UTC))

    def _run(self, op: Operation[T], *, write: bool = True) -> T:
        """The executor: the operation's statements, one by one, in one transaction."""
        if self._opened is not None and self._opened.missing and self.path.exists():
            with self._lock:  # a store read as empty has been made since: read it from now on
                self._opened = None
        with self._transaction(write) as db:
            return run_sync(op, db)

    def _held_elsewhere(self, mutex_id: str, beacon: Beacon) -> HeldOnHostError:
        """The take was rolled back: a process on this host holds the mutex in the file that had this
        path before. The fence here moves past that lease's, so the next one never goes back."""
        if beacon.fence:
            with self._transaction() as db:
                raise_fence(db, mutex_id, beacon.fence)
        state = self._run(read_state(self, mutex_id, self._now()), write=False)
        if not beacon.pid:
            return HeldOnHostError(mutex_id, state, message=f"mutex '{mutex_id}' is held by a process on this host "
                                 "that is starting or ending its lease", hint="try again in a moment")
        return HeldOnHostError(mutex_id, state, message=f"mutex '{mutex_id}' is held on this host by pid {beacon.pid} "
                             f"(fence {beacon.fence}) in a store file that was removed or replaced since; that "
                             "holder stops at its next renewal", hint="wait for it, or see what that pid runs")

    def _file_lost(self, mutex_id: str, node_id: str, fence: int | None, verb: str) -> NotOwnerError:
        """Our lease lives in a file the path no longer names: it is gone for everyone else. Its fence
        goes on in the file that has the path now (made if need be), so no later fence goes back. The
        host guard stays until the release (after the command has stopped): until then nobody enters."""
        if fence is not None and self._only_wal_removed():
            # Its rows live only in the -wal this connection still has: write them into the database
            # (no one else can open it meanwhile), with the lease ended.
            with contextlib.suppress(StoreError), self._transaction() as db:
                db.execute("UPDATE mutexes SET taken = 0 WHERE mutexId = ? AND taken = 1 AND takenBy = ? "
                           "AND fence = ?", (mutex_id, node_id, fence))
            with contextlib.suppress(sqlite3.Error), self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif fence is not None:
            carry_fence(self.path, self.url, mutex_id, node_id, fence)
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': the store file {self.path} was removed or "
                             "replaced while the lease was held; the lease in it is gone",
                             hint="acquire it again (in the store file that has the name now)")


class _Opened(NamedTuple):
    """The connection and what the file held when it was opened."""

    db: sqlite3.Connection
    read_only: bool
    columns: dict[str, str]
    has_slots: bool
    has_history: bool
    has_waiters: bool
    marks: tuple[str, str, str] | None
    file: str  # the marks as the host guard's beacons carry them
    missing: bool = False  # no file: an empty one in memory stands for it (if_missing="empty")


class Transaction:
    """``BEGIN IMMEDIATE`` (write lock up front, so a read-then-write can never be overtaken) or a
    deferred read transaction; commit on success, roll back on error, driver errors translated."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, url: str, write: bool) -> None:
        self.db, self.lock, self.url, self.write = db, lock, url, write

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
        except sqlite3.Error as exc:
            self.lock.release()
            raise translate(exc, self.url) from exc
        return self.db

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self._finish(exc_type, exc)
        finally:
            self.lock.release()

    def _finish(self, exc_type: Any, exc: BaseException | None) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                self._roll_back()  # (a full disk has rolled it back already: the COMMIT's error is the one)
                raise translate(error, self.url) from error
        self._roll_back()
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, self.url) from exc

    def _roll_back(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")


def translate(exc: sqlite3.Error, url: str) -> Exception:
    if read_only_error(exc):
        return StoreUnavailableError(f"store {url} is read-only for this user: {exc}",
                                     hint="reading commands (status) work; to change leases, use a user who may "
                                          "write the file and its directory")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"store {url} is unavailable: {exc}",
                                     hint="check that the file's directory exists and is writable, and the disk "
                                          "has room")
    if type(exc) is sqlite3.DatabaseError:  # "database disk image is malformed", "file is not a database"
        return damaged_error(exc, url)
    return StoreError(f"store {url} failed: {exc}")


def schema_record() -> Operation[SchemaState | None]:
    """The meta record and the step log, or None on a store never initialized."""
    [tables] = yield row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'schema_steps')")
    if tables != 2:
        return None
    meta = yield row("SELECT version, appliedAt, appliedBy, toolVersion FROM meta WHERE id = 'schema'")
    if meta is None:
        return None
    steps = yield rows("SELECT step, appliedAt, appliedBy FROM schema_steps ORDER BY rowid")
    return SchemaState(meta[0], parse_iso(meta[1]), meta[2], meta[3],
                       tuple(AppliedStep(n, parse_iso(at), by) for n, at, by in steps))


# -- operations every part uses (see statements) -------------------------------------------------------


def read_state(store: SQLiteBase, mutex_id: str, now: Now) -> Operation[MutexState | None]:
    """The mutex's state now: its row, the live slots of a semaphore or shared hold, its waiters."""
    found = yield row(f"SELECT {store._select} FROM mutexes WHERE mutexId = ?", (mutex_id,))
    if found is None:
        return None
    states = yield from with_slots([mutex_state(found, now.ns, now.wall, store._boot)], store._boot, now.ns)
    return (yield from with_waiters(store, states, now.ns))[0]


def with_waiters(store: SQLiteBase, states: list[MutexState], now_ns: int) -> Operation[list[MutexState]]:
    if not store._has_waiters or not states:
        return states
    names = [s.mutex_id for s in states] if len(states) <= 500 else \
        [r[0] for r in (yield rows("SELECT DISTINCT mutexId FROM waiters"))]
    found = yield from waiters.waiters_of(names, store._boot, now_ns)
    return [s._replace(waiters=tuple(found[s.mutex_id])) if s.mutex_id in found else s for s in states]


def loss(store: SQLiteBase, mutex_id: str, node_id: str, fence: int | None, verb: str,
         now: Now, user: str | None = None) -> Operation[NotOwnerError]:
    """Why a guarded write matched nothing, from the state read in the same transaction."""
    return loss_error(mutex_id, node_id, fence, verb, (yield from read_state(store, mutex_id, now)), user)
