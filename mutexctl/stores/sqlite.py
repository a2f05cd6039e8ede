"""The embedded store: one SQLite file shared by the processes of one host.

Expiry is judged on ``CLOCK_BOOTTIME`` tagged with the kernel's boot id: it never jumps with NTP or
an operator's ``date -s``, keeps counting through suspend, and a lease written in an earlier boot
(a different boot id) counts as expired. Every method is one ``BEGIN IMMEDIATE`` transaction, so
the compare-and-set cannot interleave with another process (SQLite holds the write lock).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import (ConfigError, LockHeldError, NotOwnerError, StoreError,
                      StoreUnavailableError)
from ..models import Ack, ForcedRelease, Holder, Lease, Message, MutexState, Overview, iso_ms, parse_iso
from ..schema import HISTORY_RETENTION_S, LOG_RETENTION_S, AppliedStep, SchemaState
from . import loss_error, mask_url, released_late_error

BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mutexes (
    mutexId   TEXT PRIMARY KEY,
    taken     INTEGER NOT NULL,
    takenAt   TEXT,               -- the seed's ISO-8601 string
    takenBy   TEXT,
    timeout   INTEGER,            -- milliseconds
    expiresAt TEXT,               -- for people (expiry is decided on bootId + expiresNs)
    fence     INTEGER NOT NULL,
    bootId    TEXT,
    expiresNs INTEGER,            -- CLOCK_BOOTTIME nanoseconds
    host TEXT, pid INTEGER, user TEXT, command TEXT
);
CREATE TABLE IF NOT EXISTS forced_releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mutexId TEXT NOT NULL, at TEXT NOT NULL, byNode TEXT NOT NULL, byUser TEXT NOT NULL,
    byHost TEXT NOT NULL, reason TEXT NOT NULL, previousHolder TEXT, previousFence INTEGER NOT NULL
);
"""

_META = """
CREATE TABLE IF NOT EXISTS meta (
    id TEXT PRIMARY KEY, version INTEGER NOT NULL, appliedAt TEXT NOT NULL, appliedBy TEXT NOT NULL,
    toolVersion TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER NOT NULL, appliedAt TEXT NOT NULL, appliedBy TEXT NOT NULL);
"""

# Step N of mutexctl.schema.STEPS, each safe to run twice.
_STEPS = {
    1: "CREATE INDEX IF NOT EXISTS mutexes_takenBy ON mutexes (takenBy);",
    2: "CREATE INDEX IF NOT EXISTS forced_releases_at ON forced_releases (at);",
    3: """
CREATE TABLE IF NOT EXISTS counters (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,
    payload TEXT NOT NULL, sender TEXT NOT NULL, recipients TEXT NOT NULL, expected TEXT NOT NULL,
    at TEXT NOT NULL, UNIQUE (channel, seq)
);
CREATE INDEX IF NOT EXISTS messages_at ON messages (at);
CREATE TABLE IF NOT EXISTS acks (
    messageId TEXT NOT NULL, node TEXT NOT NULL, at TEXT NOT NULL, status INTEGER NOT NULL,
    durationMs INTEGER NOT NULL, PRIMARY KEY (messageId, node)
);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT NOT NULL, channel TEXT NOT NULL, lastSeen TEXT NOT NULL, host TEXT, pid INTEGER,
    cursor INTEGER, PRIMARY KEY (node, channel)
);
""",
    4: "",  # the unique mutexId: the primary key of mutexes already
}

_COLUMNS = "mutexId, taken, takenAt, takenBy, timeout, expiresAt, fence, bootId, expiresNs, host, pid, user, command"

# One statement: insert a new mutex, or take an existing one only if it is free or expired.
# The WHERE of DO UPDATE is the compare; when it fails, RETURNING yields no row.
_ACQUIRE = f"""
INSERT INTO mutexes ({_COLUMNS}) VALUES (:id, 1, :at, :node, :timeout, :expires_at, 1, :boot, :expires_ns,
                                        :host, :pid, :user, :command)
ON CONFLICT (mutexId) DO UPDATE SET
    taken = 1, takenAt = :at, takenBy = :node, timeout = :timeout, expiresAt = :expires_at,
    fence = mutexes.fence + 1, bootId = :boot, expiresNs = :expires_ns,
    host = :host, pid = :pid, user = :user, command = :command
WHERE mutexes.taken = 0 OR mutexes.bootId IS NOT :boot OR mutexes.expiresNs <= :now_ns
RETURNING fence
"""

_OURS = "mutexId = :id AND taken = 1 AND takenBy = :node AND (:fence IS NULL OR fence = :fence)"
_LIVE = "bootId = :boot AND expiresNs > :now_ns"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: fall back to the wall clock, which a reboot does not reset
        return "wall-clock"


def _clock_ns(boot: str) -> int:
    if boot != "wall-clock" and hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return time.time_ns()


class SQLiteStore:
    """``sqlite:///abs/path.db`` or ``sqlite:relative/path.db``; the file is created on first use."""

    clock = "host"

    def __init__(self, path: Path, url: str, *, log_retention_s: float = LOG_RETENTION_S) -> None:
        self.log_retention_s = log_retention_s
        self.path = path
        self.url = mask_url(url)
        self._boot = boot_id()
        self._db = _open(path, url)
        self._lock = threading.Lock()  # one connection, shared by the caller and a renewal thread

    @classmethod
    def from_url(cls, url: str, *, log_retention_s: float = LOG_RETENTION_S) -> SQLiteStore:
        rest = url.split(":", 1)[1]
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority not in ("", "localhost"):
                raise ConfigError(f"store URL {url!r} names a host; SQLite files are local",
                                  hint="use sqlite:///absolute/path.db")
            rest = "/" + rest.lstrip("/")
        path = rest.split("?", 1)[0]
        if path in ("", "/"):
            raise ConfigError(f"store URL {url!r} has no file path", hint="use sqlite:///absolute/path.db")
        return cls(Path(path), url, log_retention_s=log_retention_s)

    # -- the store protocol -------------------------------------------------------------------

    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> Lease:
        with self._transaction() as db:
            now_ns, now = _clock_ns(self._boot), datetime.now(timezone.utc)
            expires = now + timedelta(milliseconds=timeout_ms)
            row = db.execute(_ACQUIRE, {
                "id": mutex_id, "at": iso_ms(now), "node": node_id, "timeout": timeout_ms,
                "expires_at": iso_ms(expires), "boot": self._boot, "now_ns": now_ns,
                "expires_ns": now_ns + timeout_ms * 1_000_000, "host": holder.host, "pid": holder.pid,
                "user": holder.user, "command": holder.command}).fetchone()
            if row is None:
                raise LockHeldError(mutex_id, self._state(db, mutex_id))
            return Lease(mutex_id, node_id, row[0], timeout_ms, now, expires)

    def renew(self, lease: Lease) -> Lease:
        with self._transaction() as db:
            now_ns, now = _clock_ns(self._boot), datetime.now(timezone.utc)
            expires = now + timedelta(milliseconds=lease.timeout_ms)
            params = self._params(lease.mutex_id, lease.node_id, lease.fence, now_ns)
            params.update(expires_ns=now_ns + lease.timeout_ms * 1_000_000, expires_at=iso_ms(expires))
            changed = db.execute(f"UPDATE mutexes SET expiresNs = :expires_ns, expiresAt = :expires_at "
                                 f"WHERE {_OURS} AND {_LIVE}", params).rowcount
            if changed != 1:
                raise self._loss(db, lease.mutex_id, lease.node_id, lease.fence, "renew")
            return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                         lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        with self._transaction() as db:
            params = self._params(mutex_id, node_id, fence, _clock_ns(self._boot))
            row = db.execute(f"UPDATE mutexes SET taken = 0 WHERE {_OURS} "
                             f"RETURNING ({_LIVE}), fence", params).fetchone()
            if row is None:
                raise self._loss(db, mutex_id, node_id, fence, "release")
        if not row[0]:
            raise released_late_error(mutex_id, row[1])

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        with self._transaction() as db:
            before = self._state(db, mutex_id)
            if before is None or not before.taken:
                return None
            db.execute("UPDATE mutexes SET taken = 0 WHERE mutexId = ?", (mutex_id,))
            now = datetime.now(timezone.utc)
            db.execute("INSERT INTO forced_releases (mutexId, at, byNode, byUser, byHost, reason, previousHolder,"
                       " previousFence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (mutex_id, iso_ms(now), by_node, by.user, by.host, reason, before.taken_by, before.fence))
            # SQLite has no TTL index: the history is pruned here, when it grows.
            db.execute("DELETE FROM forced_releases WHERE at < ?",
                       (iso_ms(now - timedelta(seconds=HISTORY_RETENTION_S)),))
            return before

    def get(self, mutex_id: str) -> MutexState | None:
        with self._transaction(write=False) as db:
            return self._state(db, mutex_id)

    def overview(self, mutex_id: str | None, forced_limit: int) -> Overview:
        with self._transaction(write=False) as db:  # one snapshot of all three
            rows = db.execute(f"SELECT {_COLUMNS} FROM mutexes WHERE (:id IS NULL OR mutexId = :id) ORDER BY mutexId",
                              {"id": mutex_id}).fetchall()
            now_ns, now = _clock_ns(self._boot), datetime.now(timezone.utc)
            return Overview(tuple(self._from_row(row, now_ns, now) for row in rows),
                            _forced(db, mutex_id, forced_limit), _schema(db), now)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        with self._transaction(write=False) as db:
            return list(_forced(db, mutex_id, limit))

    # -- schema ---------------------------------------------------------------------------------

    def schema_state(self) -> SchemaState | None:
        with self._transaction(write=False) as db:
            return _schema(db)

    def prepare_writes(self, schema_version: int) -> None:
        pass  # mutexId is the table's primary key: unique from the first write

    def schema_problems(self) -> list[tuple[int, str]]:
        return []

    def retention_drift(self) -> tuple[int, int] | None:
        return None  # messages are pruned on insert by the writer's own log_retention

    def apply_retention(self) -> None:
        pass

    def apply_schema_step(self, step: int) -> None:
        with self._transaction() as db:
            for statement in filter(str.strip, _STEPS[step].split(";")):
                db.execute(statement)

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the version to ``step`` and log it, in one transaction."""
        now = iso_ms(datetime.now(timezone.utc))
        with self._transaction() as db:
            for statement in filter(str.strip, _META.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO meta (id, version, appliedAt, appliedBy, toolVersion) "
                       "VALUES ('schema', ?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET version = excluded.version, appliedAt = excluded.appliedAt, "
                       "appliedBy = excluded.appliedBy, toolVersion = excluded.toolVersion",
                       (step, now, applied_by, tool_version))
            db.execute("INSERT INTO schema_steps (step, appliedAt, appliedBy) VALUES (?, ?, ?)",
                       (step, now, applied_by))

    def server_report(self) -> dict[str, str]:
        with self._transaction(write=False) as db:
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        return {"engine": f"SQLite {sqlite3.sqlite_version}", "journal": journal, "path": str(self.path),
                "clock": "this host's boot clock" if self._boot != "wall-clock" else "this host's wall clock"}

    # -- intracom -------------------------------------------------------------------------------

    def next_seq(self, channel: str) -> int:
        with self._transaction() as db:
            return int(db.execute("INSERT INTO counters (channel, seq) VALUES (?, 1) ON CONFLICT (channel) "
                                  "DO UPDATE SET seq = seq + 1 RETURNING seq", (channel,)).fetchone()[0])

    def latest_seq(self, channel: str) -> int:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT seq FROM counters WHERE channel = ?", (channel,)).fetchone()
        return int(row[0]) if row else 0

    def append_message(self, message: Message) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO messages (id, channel, seq, action, payload, sender, recipients, expected, at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (message.id, message.channel, message.seq, message.action, message.payload, message.sender,
                        json.dumps(message.to), json.dumps(message.expected), iso_ms(message.at)))
            # SQLite has no TTL index: the log is pruned here, as it grows.
            db.execute("DELETE FROM messages WHERE at < ?",
                       (iso_ms(message.at - timedelta(seconds=self.log_retention_s)),))

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                              (channel, seq, limit)).fetchall()
        return [_message(row) for row in rows]

    def get_message(self, message_id: str) -> Message | None:
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    def record_ack(self, ack: Ack) -> bool:
        with self._transaction() as db:
            return db.execute("INSERT INTO acks (messageId, node, at, status, durationMs) VALUES (?, ?, ?, ?, ?) "
                              "ON CONFLICT DO NOTHING",
                              (ack.message_id, ack.node, iso_ms(ack.at), ack.status, ack.duration_ms)).rowcount == 1

    def acks(self, message_id: str) -> list[Ack]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT messageId, node, at, status, durationMs FROM acks WHERE messageId = ? "
                              "ORDER BY node", (message_id,)).fetchall()
        return [Ack(r[0], r[1], parse_iso(r[2]), r[3], r[4]) for r in rows]

    def acked(self, node: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        marks = ", ".join("?" for _ in message_ids)
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT messageId FROM acks WHERE node = ? AND messageId IN ({marks})",
                              (node, *message_ids)).fetchall()
        return {r[0] for r in rows}

    def register_node(self, node: str, channel: str, host: str, pid: int) -> int | None:
        with self._transaction() as db:
            row = db.execute("INSERT INTO nodes (node, channel, lastSeen, host, pid) VALUES (?, ?, ?, ?, ?) "
                             "ON CONFLICT (node, channel) DO UPDATE SET lastSeen = excluded.lastSeen, "
                             "host = excluded.host, pid = excluded.pid RETURNING cursor",
                             (node, channel, iso_ms(datetime.now(timezone.utc)), host, pid)).fetchone()
        return None if row[0] is None else int(row[0])

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE nodes SET cursor = ? WHERE node = ? AND channel = ?", (cursor, node, channel))

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        since = iso_ms(datetime.now(timezone.utc) - timedelta(seconds=within_s))
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT node FROM nodes WHERE channel = ? AND lastSeen >= ? ORDER BY node",
                              (channel, since)).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        # A renewal thread may still be inside a statement (blocked on a busy database); closing the
        # connection under it would crash it, and the process is about to exit anyway.
        if self._lock.acquire(timeout=1.0):
            try:
                self._db.close()
            finally:
                self._lock.release()

    # -- helpers ------------------------------------------------------------------------------

    def _params(self, mutex_id: str, node_id: str, fence: int | None, now_ns: int) -> dict[str, Any]:
        return {"id": mutex_id, "node": node_id, "fence": fence, "boot": self._boot, "now_ns": now_ns}

    def _loss(self, db: sqlite3.Connection, mutex_id: str, node_id: str, fence: int | None,
              verb: str) -> NotOwnerError:
        return loss_error(mutex_id, node_id, fence, verb, self._state(db, mutex_id))  # read in the same transaction

    def _state(self, db: sqlite3.Connection, mutex_id: str) -> MutexState | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM mutexes WHERE mutexId = ?", (mutex_id,)).fetchone()
        return None if row is None else self._from_row(row, _clock_ns(self._boot), datetime.now(timezone.utc))

    def _from_row(self, row: tuple[Any, ...], now_ns: int, now: datetime) -> MutexState:
        (mutex_id, taken, taken_at, taken_by, timeout, expires_at, fence, boot, expires_ns,
         host, pid, user, command) = row
        remaining = None
        if taken:
            # Rounded up, so that a lease with any time left never reads as 0 ms (expired).
            remaining = max(0, -((now_ns - expires_ns) // 1_000_000)) if boot == self._boot else 0
        holder = Holder(host, pid, user, command) if host is not None else None
        taken_at = parse_iso(taken_at) if taken_at else None
        return MutexState(mutex_id, bool(taken), taken_by, taken_at, parse_iso(expires_at) if expires_at else None,
                          timeout, fence, holder, now, remaining, since=taken_at)

    def _transaction(self, write: bool = True) -> _Transaction:
        return _Transaction(self._db, self._lock, self.url, write)


class _Transaction:
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
            raise _translate(exc, self.url) from exc
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
                self.db.execute("ROLLBACK")
                raise _translate(error, self.url) from error
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, self.url) from exc


def _translate(exc: sqlite3.Error, url: str) -> Exception:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"store {url} is unavailable: {exc}",
                                     hint="check that the file's directory exists and is writable")
    return StoreError(f"store {url} failed: {exc}")


def _forced(db: sqlite3.Connection, mutex_id: str | None, limit: int) -> tuple[ForcedRelease, ...]:
    rows = db.execute("SELECT mutexId, at, byNode, byUser, byHost, reason, previousHolder, previousFence "
                      "FROM forced_releases WHERE (? IS NULL OR mutexId = ?) ORDER BY id DESC LIMIT ?",
                      (mutex_id, mutex_id, limit)).fetchall()
    return tuple(ForcedRelease(r[0], parse_iso(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows)


def _schema(db: sqlite3.Connection) -> SchemaState | None:
    if not _has_tables(db, "meta", "schema_steps"):
        return None
    row = db.execute("SELECT version, appliedAt, appliedBy, toolVersion FROM meta WHERE id = 'schema'").fetchone()
    if row is None:
        return None
    steps = db.execute("SELECT step, appliedAt, appliedBy FROM schema_steps ORDER BY rowid").fetchall()
    return SchemaState(row[0], parse_iso(row[1]), row[2], row[3],
                       tuple(AppliedStep(n, parse_iso(at), by) for n, at, by in steps))


def _open(path: Path, url: str) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreUnavailableError(f"cannot open store {url}: {reason}",
                                    hint="choose a writable path with --store sqlite:///path/to/file.db") from exc
    try:
        _use_wal(db)
        # NORMAL sync is enough in WAL mode because a power loss also changes the boot id, which
        # expires every lease the lost transactions could have held.
        db.execute("PRAGMA synchronous = NORMAL")
        if not _has_tables(db, "mutexes", "forced_releases"):
            # BEGIN IMMEDIATE waits (busy timeout) for the write lock; a plain script would read the
            # schema first and could not upgrade to writing while a first-time peer creates it too.
            db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        db.close()
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreUnavailableError(f"cannot open store {url}: {exc}",
                                        hint="choose a writable path with --store sqlite:///path/to/file.db") from exc
        raise StoreError(f"store {url} is not a mutexctl SQLite database: {exc}",
                         hint="point --store at another file") from exc
    return db


_MESSAGE = "id, channel, seq, action, payload, sender, recipients, expected, at"


def _message(row: tuple[Any, ...]) -> Message:
    return Message(row[0], row[1], int(row[2]), row[3], row[4], row[5], tuple(json.loads(row[6])),
                   tuple(json.loads(row[7])), parse_iso(row[8]))


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL lets readers (status) run beside a writer. Processes opening a new file at once race to
    switch it; the loser's switch can fail as busy, which is fine when the winner's took effect."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    try:
        db.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise


def _has_tables(db: sqlite3.Connection, *names: str) -> bool:
    marks = ", ".join("?" for _ in names)
    found = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", names)
    return bool(found.fetchone()[0] == len(names))
