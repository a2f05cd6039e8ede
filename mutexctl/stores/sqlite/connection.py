"""The SQLite file: opening it (WAL, first-time tables), one transaction per store method, the clock
leases are judged on, and the translation of driver errors."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from ...errors import ConfigError, StoreError, StoreUnavailableError
from ...models import AppliedStep, SchemaState, parse_iso
from ...redact import mask_url
from ..steps import HISTORY_RETENTION_S, LOG_RETENTION_S

BUSY_TIMEOUT_S = 10.0
# The time every writer stamps, read by SQLite itself: one clock for all the processes sharing the
# file, whatever a caller's own clock says (same form as iso_ms).
SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def sql_ago(seconds: float) -> str:
    """SQL for the store's now minus ``seconds``, in SQL_NOW's form (so it compares as text)."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{float(seconds):.3f} seconds')"

# Tables by schema name. mutexes and forced_releases exist from the first use (lock commands work
# on a store init-schema never saw); the others come with their schema step.
TABLES = {
    "mutexes": """CREATE TABLE IF NOT EXISTS mutexes (
        mutexId   TEXT PRIMARY KEY,
        taken     INTEGER NOT NULL,
        takenAt   TEXT,               -- the seed's ISO-8601 string
        takenBy   TEXT,
        timeout   INTEGER,            -- milliseconds
        expiresAt TEXT,               -- for people (expiry is decided on bootId + expiresNs)
        fence     INTEGER NOT NULL,
        bootId    TEXT,
        expiresNs INTEGER,            -- CLOCK_BOOTTIME nanoseconds
        host TEXT, pid INTEGER, user TEXT, command TEXT,
        execMode INTEGER,             -- 1: a running mutexctl supervises a command under this lease
        kind TEXT, slotLimit INTEGER, -- while slots are held: semaphore (of slotLimit) or shared
        writerWaiting TEXT, writerUntilNs INTEGER,  -- shared: an exclusive waiter new holds wait for
        slotsAt TEXT)                 -- the takenAt the slots belong to (another writer's take voids them)""",
    "slots": """CREATE TABLE IF NOT EXISTS slots (
        mutexId TEXT NOT NULL, fence INTEGER NOT NULL, node TEXT NOT NULL, bootId TEXT NOT NULL,
        expiresNs INTEGER NOT NULL, expiresAt TEXT NOT NULL, since TEXT NOT NULL, timeout INTEGER NOT NULL,
        host TEXT, pid INTEGER, user TEXT, command TEXT, execMode INTEGER, PRIMARY KEY (mutexId, fence))""",
    "history": """CREATE TABLE IF NOT EXISTS history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, mutexId TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
        node TEXT, fence INTEGER, host TEXT, pid INTEGER, user TEXT, command TEXT, waitedMs INTEGER,
        heldMs INTEGER, previousHolder TEXT, previousFence INTEGER, lateMs INTEGER, reason TEXT, slot TEXT)""",
    "waiters": """CREATE TABLE IF NOT EXISTS waiters (
        mutexId TEXT NOT NULL, token TEXT NOT NULL, node TEXT NOT NULL, host TEXT, pid INTEGER, user TEXT,
        since TEXT NOT NULL, sinceNs INTEGER NOT NULL, seenNs INTEGER NOT NULL, bootId TEXT NOT NULL,
        ticket INTEGER NOT NULL, PRIMARY KEY (mutexId, token))""",
    "once_markers": """CREATE TABLE IF NOT EXISTS once_markers (
        mutexId TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL, byNode TEXT NOT NULL, fence INTEGER,
        host TEXT, pid INTEGER, user TEXT, command TEXT, PRIMARY KEY (mutexId, key))""",
    "forced_releases": """CREATE TABLE IF NOT EXISTS forced_releases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mutexId TEXT NOT NULL, at TEXT NOT NULL, byNode TEXT NOT NULL, byUser TEXT NOT NULL,
        byHost TEXT NOT NULL, reason TEXT NOT NULL, previousHolder TEXT, previousFence INTEGER)""",
    "counters": "CREATE TABLE IF NOT EXISTS counters (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "messages": """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, channel TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,
        payload TEXT NOT NULL, sender TEXT NOT NULL, recipients TEXT NOT NULL, expected TEXT NOT NULL,
        at TEXT NOT NULL, UNIQUE (channel, seq))""",
    "acks": """CREATE TABLE IF NOT EXISTS acks (
        messageId TEXT NOT NULL, node TEXT NOT NULL, at TEXT NOT NULL, status INTEGER NOT NULL,
        durationMs INTEGER NOT NULL, PRIMARY KEY (messageId, node))""",
    "nodes": """CREATE TABLE IF NOT EXISTS nodes (
        node TEXT NOT NULL, channel TEXT NOT NULL, lastSeen TEXT NOT NULL, host TEXT, pid INTEGER,
        cursor INTEGER, since INTEGER, PRIMARY KEY (node, channel))""",
    "meta": """CREATE TABLE IF NOT EXISTS meta (
        id TEXT PRIMARY KEY, version INTEGER NOT NULL, appliedAt TEXT NOT NULL, appliedBy TEXT NOT NULL,
        toolVersion TEXT NOT NULL)""",
    "schema_steps": "CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER NOT NULL, appliedAt TEXT NOT NULL, "
                    "appliedBy TEXT NOT NULL)",
}
FIRST_USE = ("mutexes", "forced_releases", "slots", "once_markers", "history", "waiters")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: fall back to the wall clock, which a reboot does not reset
        return "wall-clock"


def boot_clock_ns(boot: str) -> Callable[[], int]:
    """The clock leases are judged on: CLOCK_BOOTTIME (never jumps with NTP or ``date -s``, counts
    a suspend), tagged with the boot id; the wall clock where there is no boot id."""
    if boot != "wall-clock" and hasattr(time, "CLOCK_BOOTTIME"):
        return lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return time.time_ns


class SQLiteBase:
    """What every part of the SQLite store shares: one connection, its lock, the lease clock.

    ``clock_ns`` replaces the boot clock in tests, which then move time instead of sleeping.
    """

    clock = "host"  # leases are judged on this host's boot clock
    expires_by_ttl = False  # old log entries are pruned by the writers themselves
    history_retention_s: float = HISTORY_RETENTION_S  # (open_store sets the configured one)

    def __init__(self, path: Path, url: str, *, log_retention_s: float = LOG_RETENTION_S,
                 clock_ns: Callable[[], int] | None = None) -> None:
        self.log_retention_s = log_retention_s
        self.path = path
        self.url = mask_url(url)
        self._boot = boot_id()
        self._now_ns = clock_ns or boot_clock_ns(self._boot)
        self._lock = threading.Lock()  # one connection, shared by the caller and a renewal thread
        self._prepared: tuple[SchemaState | None] | None = None
        self._opened: _Opened | None = None  # on first use: a refused input never creates a file

    def _open_once(self) -> _Opened:
        if self._opened is not None:  # (always so inside a transaction, which holds the lock)
            return self._opened
        with self._lock:
            if self._opened is None:
                db, read_only = _open(self.path, self.url)
                # Files made before a column existed get it on their first writable open; read-only,
                # they read it as NULL (and miss the tables that came with it).
                columns = {column: column if has_column(db, table, column) else f"NULL AS {column}"
                           for table, column, _ in ADDED_COLUMNS if table == "mutexes"}
                self._opened = _Opened(db, read_only, columns, has_tables(db, "slots", "once_markers"),
                                       has_tables(db, "history"), has_tables(db, "waiters"))
            return self._opened

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
    def from_url(cls, url: str, *, log_retention_s: float = LOG_RETENTION_S) -> Any:
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
        return cls(Path(path), url, log_retention_s=log_retention_s)

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


class _Opened(NamedTuple):
    """The connection and what the file held when it was opened."""

    db: sqlite3.Connection
    read_only: bool
    columns: dict[str, str]
    has_slots: bool
    has_history: bool
    has_waiters: bool


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
    if _read_only_error(exc):
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


def damaged_error(exc: sqlite3.DatabaseError, url: str) -> ConfigError:
    """A store file whose pages are not SQLite's (overwritten, cut short): no retry mends it."""
    return ConfigError(f"store {url} is damaged: {exc}",
                       hint="restore the file from a backup, or move it aside (a new store starts empty)")


def read_schema(db: sqlite3.Connection) -> SchemaState | None:
    """The meta record and the step log, or None on a store never initialized."""
    if not has_tables(db, "meta", "schema_steps"):
        return None
    row = db.execute("SELECT version, appliedAt, appliedBy, toolVersion FROM meta WHERE id = 'schema'").fetchone()
    if row is None:
        return None
    steps = db.execute("SELECT step, appliedAt, appliedBy FROM schema_steps ORDER BY rowid").fetchall()
    return SchemaState(row[0], parse_iso(row[1]), row[2], row[3],
                       tuple(AppliedStep(n, parse_iso(at), by) for n, at, by in steps))


def has_tables(db: sqlite3.Connection, *names: str) -> bool:
    marks = ", ".join("?" for _ in names)
    found = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", names)
    return bool(found.fetchone()[0] == len(names))


def _open(path: Path, url: str) -> tuple[sqlite3.Connection, bool]:
    """The connection, and whether it is read-only (the file or its directory is not ours to write:
    reading commands still work)."""
    if path.is_dir():
        raise ConfigError(f"store {url} is a directory", hint="name a file in it, e.g. sqlite:///path/to/mutexctl.db")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        if path.is_file():  # a file we may read but not write, in a directory we may not write
            return _open_read_only(path, url), True
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreUnavailableError(f"cannot open store {url}: {reason}",
                                    hint="choose a writable path with --store sqlite:///path/to/file.db") from exc
    try:
        _refuse_foreign(db, url)
        _prepare(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        if _read_only_error(exc) and path.is_file():
            return _open_read_only(path, url), True
        raise _open_error(exc, url) from exc
    return db, False


# The columns every release's mutexes table has had: how a mutexctl store is told from another
# program's file that happens to have a table of that name.
_OUR_COLUMNS = {"mutexId", "taken", "takenAt", "takenBy", "timeout", "fence", "bootId", "expiresNs"}


def _refuse_foreign(db: sqlite3.Connection, url: str, *, empty_is_ours: bool = True) -> None:
    """Another program's database is left exactly as it is: no WAL switch, no tables of ours."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables and empty_is_ours:
        return  # a new (or empty) file: ours to set up
    columns = {row[1] for row in db.execute("PRAGMA table_info(mutexes)")} if "mutexes" in tables else set()
    if not columns >= _OUR_COLUMNS:
        db.close()
        theirs = ", ".join(sorted(tables - set(TABLES))[:3]) or ", ".join(sorted(tables)[:3]) or "none"
        raise ConfigError(f"store {url} is not a mutexctl store: it is another program's SQLite database "
                          f"(tables: {theirs}{', …' if len(tables) > 3 else ''}); it was left untouched",
                          hint="point the store at a file of its own, e.g. sqlite:///var/lib/mutexctl/mutexctl.db")


def _prepare(db: sqlite3.Connection) -> None:
    _use_wal(db)
    # NORMAL sync is enough in WAL mode because a power loss also changes the boot id, which
    # expires every lease the lost transactions could have held.
    db.execute("PRAGMA synchronous = NORMAL")
    if not has_tables(db, *FIRST_USE) or _missing_columns(db):
        # BEGIN IMMEDIATE waits (busy timeout) for the write lock; a plain script would read the
        # schema first and could not upgrade to writing while a first-time peer creates it too.
        db.execute("BEGIN IMMEDIATE")
        for table in FIRST_USE:
            db.execute(TABLES[table])
        for table, column, kind in _missing_columns(db):  # a file from before the column existed
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        db.execute("COMMIT")


# Columns added after their table first shipped: (table, column, type), NULL when unknown.
ADDED_COLUMNS = (("mutexes", "execMode", "INTEGER"), ("nodes", "since", "INTEGER"), ("mutexes", "kind", "TEXT"),
                 ("mutexes", "slotLimit", "INTEGER"), ("mutexes", "writerWaiting", "TEXT"),
                 ("mutexes", "writerUntilNs", "INTEGER"), ("mutexes", "slotsAt", "TEXT"))


def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return [(table, column, kind) for table, column, kind in ADDED_COLUMNS
            if has_tables(db, table) and not has_column(db, table, column)]


def _open_read_only(path: Path, url: str) -> sqlite3.Connection:
    """Read-only, for a user who may read the store but not write it. Without the WAL's index file
    (-shm) and a directory to create it in, SQLite can read only an immutable snapshot: then
    the main file holds everything committed (no -wal file means it was checkpointed)."""
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(f"file:{quote(str(path))}?{query}", uri=True, timeout=BUSY_TIMEOUT_S,
                                 isolation_level=None, check_same_thread=False)
            _refuse_foreign(db, url, empty_is_ours=False)  # (an older release's file lacks later tables: read
            return db                                         # without them)
        except sqlite3.DatabaseError as exc:
            if not _read_only_error(exc):
                raise _open_error(exc, url) from exc
    raise StoreUnavailableError(f"cannot read store {url}: this user may neither write it nor read it alone",
                                hint="ask for read access to the file, its -wal and -shm files and its directory")


def _read_only_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _open_error(exc: sqlite3.DatabaseError, url: str) -> Exception:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"cannot open store {url}: {exc}",
                                     hint="choose a writable path with --store sqlite:///path/to/file.db")
    return ConfigError(f"store {url} is not a mutexctl SQLite database: {exc}", hint="point --store at another file")


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL lets readers (status) run beside a writer. Processes opening a new file at once race to
    switch it; the loser's switch fails as busy (SQLite does not wait for this one), which is fine:
    the mode is kept in the file, and the winner's switch applies to every connection's next
    transaction. Any other failure is raised."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    try:
        db.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise
