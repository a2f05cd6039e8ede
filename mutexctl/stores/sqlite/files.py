"""The store file itself: opening it (WAL, the first-time tables, read-only), telling it from another
program's file, which file it is (a connection's database, -wal and -shm), and what is done when it
was removed or replaced under a connection (see ``guard``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ...errors import ConfigError, MutexctlError, StoreMissingError, StoreUnavailableError
from ..protocols import IfMissing

BUSY_TIMEOUT_S = 10.0
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
        execMode INTEGER,             -- 1: a running mutexctl supervises a command under this lease (rows.py)
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
        cursor INTEGER, since INTEGER, leftAt TEXT, PRIMARY KEY (node, channel))""",
    "leaders": """CREATE TABLE IF NOT EXISTS leaders (
        mutexId TEXT PRIMARY KEY, fence INTEGER NOT NULL, node TEXT NOT NULL, value TEXT NOT NULL,
        at TEXT NOT NULL)""",
    "meta": """CREATE TABLE IF NOT EXISTS meta (
        id TEXT PRIMARY KEY, version INTEGER NOT NULL, appliedAt TEXT NOT NULL, appliedBy TEXT NOT NULL,
        toolVersion TEXT NOT NULL)""",
    "schema_steps": "CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER NOT NULL, appliedAt TEXT NOT NULL, "
                    "appliedBy TEXT NOT NULL)",
}
FIRST_USE = ("mutexes", "forced_releases", "slots", "once_markers", "history", "waiters", "leaders")


_ABANDONED: list[sqlite3.Connection] = []  # connections to replaced files, kept open until the process ends


def abandon(db: sqlite3.Connection) -> None:
    if hasattr(db, "setconfig") and hasattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE"):  # Python >= 3.12
        with contextlib.suppress(sqlite3.Error):
            db.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
    _ABANDONED.append(db)


def raise_fence(db: sqlite3.Connection, mutex_id: str, fence: int) -> None:
    """The mutex's next fence comes after ``fence`` (a row is made for a name the file never had)."""
    db.execute("INSERT INTO mutexes (mutexId, taken, fence) VALUES (?, 0, ?) "
               "ON CONFLICT (mutexId) DO UPDATE SET fence = MAX(fence, excluded.fence)", (mutex_id, fence))


def carry_fence(path: Path, url: str, mutex_id: str, node_id: str, fence: int) -> None:
    """Best effort, in whatever store file now has ``path`` (made if it is gone): the fence goes on
    from ``fence``, and the lease is released there if that file still shows it (a -shm or -wal
    replaced under a connection: the rows are the same, the connections no longer see each other)."""
    with contextlib.suppress(MutexctlError, sqlite3.Error, OSError):
        db, read_only = open_file(path, url)
        try:
            if not read_only:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE mutexes SET taken = 0 WHERE mutexId = ? AND taken = 1 AND takenBy = ? "
                           "AND fence = ?", (mutex_id, node_id, fence))
                raise_fence(db, mutex_id, fence)
                db.execute("COMMIT")
        finally:
            db.close()


def file_marks(path: Path) -> tuple[str, str, str] | None:
    """Device and inode of the database and of its -wal and -shm; None if the database is gone. A
    connection keeps its -wal and -shm for as long as it is open."""
    marks = []
    for suffix in ("", "-wal", "-shm"):
        try:
            found = os.stat(f"{path}{suffix}")
        except FileNotFoundError:
            if not suffix:
                return None
            marks.append("-")
            continue
        except OSError:
            return None
        marks.append(f"{found.st_dev}:{found.st_ino}")
    return marks[0], marks[1], marks[2]


def identity(marks: tuple[str, str, str] | None) -> str:
    """The marks as a short text, for the host guard's beacons."""
    return hashlib.sha256(",".join(marks or ("gone",)).encode()).hexdigest()[:12]


def damaged_error(exc: sqlite3.DatabaseError, url: str) -> ConfigError:
    """A store file whose pages are not SQLite's (overwritten, cut short): no retry mends it."""
    return ConfigError(f"store {url} is damaged: {exc}",
                       hint="restore the file from a backup, or move it aside (a new store starts empty)")


def has_tables(db: sqlite3.Connection, *names: str) -> bool:
    marks = ", ".join("?" for _ in names)
    found = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", names)
    return bool(found.fetchone()[0] == len(names))


def open_file(path: Path, url: str, if_missing: IfMissing = "create") -> tuple[sqlite3.Connection, bool]:
    """The connection, and whether it is read-only (the file or its directory is not ours to write:
    reading commands still work). A missing file read as empty is an empty database in memory, read-only."""
    if path.is_dir():
        raise ConfigError(f"store {url} is a directory", hint="name a file in it, e.g. sqlite:///path/to/mutexctl.db")
    if if_missing != "create" and not path.exists():
        if if_missing == "fail":
            raise StoreMissingError(f"store {url} does not exist (nothing was created)",
                                    hint="check the path: the first lock command or init-schema creates the store")
        return _empty(), True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_orphans(path)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        if path.is_file():  # a file we may read but not write, in a directory we may not write
            return _open_read_only(path, url), True
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreUnavailableError(f"cannot open store {url}: {reason}",
                                    remedy="store-path") from exc
    try:
        _refuse_foreign(db, url)
        _prepare(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        if read_only_error(exc) and path.is_file():
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


def _drop_orphans(path: Path) -> None:
    """A -wal and -shm whose database was removed belong to no file that exists: SQLite would refuse
    the new database beside them (disk I/O error) for good. A holder that still has them open keeps
    its inodes (and learns at its next renewal that its file is gone)."""
    if path.exists():
        return
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


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
                 ("mutexes", "writerUntilNs", "INTEGER"), ("mutexes", "slotsAt", "TEXT"), ("nodes", "leftAt", "TEXT"))


def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return [(table, column, kind) for table, column, kind in ADDED_COLUMNS
            if has_tables(db, table) and not has_column(db, table, column)]


def _empty() -> sqlite3.Connection:
    """A store with every table and nothing in them, in memory: what a store not made yet holds."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    for statement in TABLES.values():
        db.execute(statement)
    db.execute("PRAGMA query_only = ON")
    return db


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
            if not read_only_error(exc):
                raise _open_error(exc, url) from exc
    raise StoreUnavailableError(f"cannot read store {url}: this user may neither write it nor read it alone",
                                hint="ask for read access to the file, its -wal and -shm files and its directory")


def read_only_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _open_error(exc: sqlite3.DatabaseError, url: str) -> Exception:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"cannot open store {url}: {exc}",
                                     remedy="store-path")
    return ConfigError(f"store {url} is not a mutexctl SQLite database: {exc}", remedy="store-other-file")


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
