"""Leases on SQLite: each operation one ``BEGIN IMMEDIATE`` transaction, expiry on the boot clock."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import LockHeldError, NotOwnerError
from ...logs import logger
from ...models import ForcedRelease, Holder, Lease, MutexState, Overview, SchemaState, iso_ms, parse_iso
from ..common import loss_error, newer_store_error, released_late_error
from ..steps import HISTORY_RETENTION_S, SCHEMA_VERSION
from .connection import SQL_NOW, SQLiteBase, read_schema, sql_ago

log = logger("mutexctl.stores.sqlite")

COLUMNS = ("mutexId, taken, takenAt, takenBy, timeout, expiresAt, fence, bootId, expiresNs, host, pid, user, command, "
           "execMode")

# One statement: insert a new mutex, or take an existing one only if it is free or expired.
# The WHERE of DO UPDATE is the compare; when it fails, RETURNING yields no row.
_ACQUIRE = f"""
INSERT INTO mutexes ({COLUMNS}) VALUES (:id, 1, :at, :node, :timeout, :expires_at, 1, :boot, :expires_ns,
                                        :host, :pid, :user, :command, :exec)
ON CONFLICT (mutexId) DO UPDATE SET
    taken = 1, takenAt = :at, takenBy = :node, timeout = :timeout, expiresAt = :expires_at,
    fence = mutexes.fence + 1, bootId = :boot, expiresNs = :expires_ns,
    host = :host, pid = :pid, user = :user, command = :command, execMode = :exec
WHERE mutexes.taken = 0 OR mutexes.bootId IS NOT :boot OR mutexes.expiresNs <= :now_ns
RETURNING fence
"""
# Our lease: with its fence, that very lease; without one (a plain release, the seed's V), only a
# lease no running `mutexctl acquire -- CMD` supervises.
_OURS = ("mutexId = :id AND taken = 1 AND takenBy = :node "
         "AND (fence = :fence OR (:fence IS NULL AND COALESCE(execMode, 0) = 0))")
_LIVE = "bootId = :boot AND expiresNs > :now_ns"
_FORCED = "mutexId, at, byNode, byUser, byHost, reason, previousHolder, previousFence"


class SQLiteLeases(SQLiteBase):
    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> Lease:
        with self._transaction() as db:
            now_ns, now = self._now_ns(), datetime.now(UTC)
            expires = now + timedelta(milliseconds=timeout_ms)
            row = db.execute(_ACQUIRE, {
                "id": mutex_id, "at": iso_ms(now), "node": node_id, "timeout": timeout_ms,
                "expires_at": iso_ms(expires), "boot": self._boot, "now_ns": now_ns,
                "expires_ns": now_ns + timeout_ms * 1_000_000, "host": holder.host, "pid": holder.pid,
                "user": holder.user, "command": holder.command, "exec": int(holder.exec_mode)}).fetchone()
            if row is None:
                raise LockHeldError(mutex_id, self._state(db, mutex_id))
        log.debug("acquired %s as %s (fence %s, %d ms)", mutex_id, node_id, row[0], timeout_ms)
        return Lease(mutex_id, node_id, row[0], timeout_ms, now, expires)

    def renew(self, lease: Lease) -> Lease:
        with self._transaction() as db:
            now_ns, now = self._now_ns(), datetime.now(UTC)
            expires = now + timedelta(milliseconds=lease.timeout_ms)
            params = self._params(lease.mutex_id, lease.node_id, lease.fence, now_ns)
            params.update(expires_ns=now_ns + lease.timeout_ms * 1_000_000, expires_at=iso_ms(expires),
                          timeout=lease.timeout_ms)
            changed = db.execute(f"UPDATE mutexes SET expiresNs = :expires_ns, expiresAt = :expires_at, "
                                 f"timeout = :timeout WHERE {_OURS} AND {_LIVE}", params).rowcount
            if changed != 1:
                raise self._loss(db, lease.mutex_id, lease.node_id, lease.fence, "renew")
        return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                     lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        with self._transaction() as db:
            params = self._params(mutex_id, node_id, fence, self._now_ns())
            row = db.execute(f"UPDATE mutexes SET taken = 0 WHERE {_OURS} "
                             f"RETURNING ({_LIVE}), fence", params).fetchone()
            if row is None:
                raise self._loss(db, mutex_id, node_id, fence, "release")
        if not row[0]:
            raise released_late_error(mutex_id, row[1])

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        """The release and its record in one transaction: they commit together or not at all."""
        with self._transaction() as db:
            before = self._state(db, mutex_id)
            if before is None or not before.taken:
                return None
            db.execute("UPDATE mutexes SET taken = 0 WHERE mutexId = ?", (mutex_id,))
            db.execute(f"INSERT INTO forced_releases ({_FORCED}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
                       (mutex_id, by_node, by.user, by.host, reason, before.taken_by, before.fence))
            # SQLite has no TTL index: the history is pruned here, when it grows, by the store's clock.
            db.execute(f"DELETE FROM forced_releases WHERE at < {sql_ago(HISTORY_RETENTION_S)}")
            return before

    def get(self, mutex_id: str) -> MutexState | None:
        with self._transaction(write=False) as db:
            return self._state(db, mutex_id)

    def overview(self, mutex_id: str | None, forced_limit: int) -> Overview:
        with self._transaction(write=False) as db:  # one snapshot of all three
            rows = db.execute(f"SELECT {self._select} FROM mutexes WHERE (:id IS NULL OR mutexId = :id) "
                              "ORDER BY mutexId", {"id": mutex_id}).fetchall()
            now_ns, now = self._now_ns(), datetime.now(UTC)
            return Overview(tuple(self._from_row(row, now_ns, now) for row in rows),
                            _forced(db, mutex_id, forced_limit), read_schema(db), now)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        with self._transaction(write=False) as db:
            return list(_forced(db, mutex_id, limit))

    def prepare_writes(self) -> SchemaState | None:
        """Refuse a store newer than this tool (once per store object). mutexId is the table's
        primary key: unique from the first write."""
        if self._prepared is None:
            with self._transaction(write=False) as db:
                state = read_schema(db)
            if state is not None and state.version > SCHEMA_VERSION:
                raise newer_store_error(state.version)
            self._prepared = (state,)
        return self._prepared[0]

    # -- helpers --------------------------------------------------------------------------------

    @property
    def _select(self) -> str:
        """The columns to read (a read-only file from before execMode existed reads it as 0)."""
        return COLUMNS.replace("execMode", self._exec_column)

    def _params(self, mutex_id: str, node_id: str, fence: int | None, now_ns: int) -> dict[str, Any]:
        return {"id": mutex_id, "node": node_id, "fence": fence, "boot": self._boot, "now_ns": now_ns}

    def _loss(self, db: sqlite3.Connection, mutex_id: str, node_id: str, fence: int | None,
              verb: str) -> NotOwnerError:
        return loss_error(mutex_id, node_id, fence, verb, self._state(db, mutex_id))  # read in the same transaction

    def _state(self, db: sqlite3.Connection, mutex_id: str) -> MutexState | None:
        row = db.execute(f"SELECT {self._select} FROM mutexes WHERE mutexId = ?", (mutex_id,)).fetchone()
        return None if row is None else self._from_row(row, self._now_ns(), datetime.now(UTC))

    def _from_row(self, row: tuple[Any, ...], now_ns: int, now: datetime) -> MutexState:
        (mutex_id, taken, taken_at, taken_by, timeout, expires_at, fence, boot, expires_ns,
         host, pid, user, command, exec_mode) = row
        remaining = None
        if taken:
            # Rounded up, so that a lease with any time left never reads as 0 ms (expired).
            remaining = max(0, -((now_ns - expires_ns) // 1_000_000)) if boot == self._boot else 0
        holder = Holder(host, pid, user, command, bool(exec_mode)) if host is not None else None
        taken_at = parse_iso(taken_at) if taken_at else None
        return MutexState(mutex_id, bool(taken), taken_by, taken_at, parse_iso(expires_at) if expires_at else None,
                          timeout, fence, holder, now, remaining, since=taken_at)


def _forced(db: sqlite3.Connection, mutex_id: str | None, limit: int) -> tuple[ForcedRelease, ...]:
    rows = db.execute(f"SELECT {_FORCED} FROM forced_releases WHERE (? IS NULL OR mutexId = ?) "
                      "ORDER BY id DESC LIMIT ?", (mutex_id, mutex_id, limit)).fetchall()
    return tuple(ForcedRelease(r[0], parse_iso(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows)
