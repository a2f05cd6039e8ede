"""Exclusive leases on SQLite: take, renew, release and break one, each one ``BEGIN IMMEDIATE``
transaction, expiry on the boot clock, the history written in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ...errors import LockHeldError
from ...logs import logger
from ...models import Holder, Lease, LeaseRequest, MutexState, WakeList, iso_ms, parse_iso
from ..common import released_late_error
from ..steps import FORCED_RETENTION_S
from . import events, waiters
from .base import SQLiteBase
from .exclusive import LIVE, OURS, HeldElsewhereError, take
from .rows import FORCED_COLUMNS
from .times import SQL_NOW, sql_ago

log = logger("mutexctl.stores.sqlite")


class SQLiteLeases(SQLiteBase):
    def try_acquire(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
        self._follow_path()
        try:
            with self._transaction() as db:
                now_ns = self._now_ns()
                if self._has_waiters and waiters.someone_waits(db, mutex_id, self._boot, now_ns):
                    raise LockHeldError(mutex_id, self._state(db, mutex_id))  # (waiters first: see wait_turn)
                lease = take(self, db, mutex_id, node_id, timeout_ms, holder, waited_ms, now_ns)
                if lease is None:
                    raise LockHeldError(mutex_id, self._state(db, mutex_id))
        except HeldElsewhereError as elsewhere:
            raise self._held_elsewhere(mutex_id, elsewhere.beacon) from None
        log.debug("acquired %s as %s (fence %s, %d ms)", mutex_id, node_id, lease.fence, timeout_ms)
        return lease

    def renew(self, lease: Lease) -> Lease:
        if self._replaced():
            raise self._file_lost(lease.mutex_id, lease.node_id, lease.fence, "renew")
        with self._transaction() as db:
            now_ns, now = self._now_ns(), datetime.now(UTC)
            expires = now + timedelta(milliseconds=lease.timeout_ms)
            params = self._params(lease.mutex_id, lease.node_id, lease.fence, now_ns)
            params.update(expires_ns=now_ns + lease.timeout_ms * 1_000_000, expires_at=iso_ms(expires),
                          timeout=lease.timeout_ms)
            changed = db.execute(f"UPDATE mutexes SET expiresNs = :expires_ns, expiresAt = :expires_at, "
                                 f"timeout = :timeout WHERE {OURS} AND {LIVE}", params).rowcount
            if changed != 1:
                raise self._loss(db, lease.mutex_id, lease.node_id, lease.fence, "renew")
        self.guard.refresh(lease.mutex_id, lease.fence, lease.timeout_ms, self._file, slot=False)
        return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                     lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> WakeList:
        self.guard.drop(mutex_id, fence)  # first: the next taker of this file may then bind it
        if self._replaced():
            raise self._file_lost(mutex_id, node_id, fence, "release")
        with self._transaction() as db:
            params = self._params(mutex_id, node_id, fence, self._now_ns())
            row = db.execute(f"UPDATE mutexes SET taken = 0 WHERE {OURS} "
                             f"RETURNING ({LIVE}), fence, takenAt, host, pid, user, command", params).fetchone()
            if row is None:
                raise self._loss(db, mutex_id, node_id, fence, "release")
            if self._has_history:
                holder = Holder(row[3], row[4], row[5], row[6]) if row[3] is not None else None
                events.record(db, self.history_retention_s, mutex_id, "release" if row[0] else "release-late",
                              node_id, row[1], holder,
                              held_ms=events.since_ms(parse_iso(row[2]) if row[2] else None, datetime.now(UTC)))
            line = waiters.in_line(db, mutex_id, self._boot, params["now_ns"]) if self._has_waiters else ()
        if not row[0]:
            raise released_late_error(mutex_id, row[1])
        return line

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        """The release and its record in one transaction: they commit together or not at all."""
        with self._transaction() as db:
            before = self._state(db, mutex_id)
            if before is None or not before.taken:
                return None
            db.execute("UPDATE mutexes SET taken = 0 WHERE mutexId = ?", (mutex_id,))
            db.execute(f"INSERT INTO forced_releases ({FORCED_COLUMNS}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
                       (mutex_id, by_node, by.user, by.host, reason, before.taken_by, before.fence))
            if self._has_history:
                events.record(db, self.history_retention_s, mutex_id, "forced", by_node, None, by,
                              previous_holder=before.taken_by, previous_fence=before.fence, reason=reason,
                              held_ms=events.since_ms(before.since, datetime.now(UTC)))
            # SQLite has no TTL index: the history is pruned here, when it grows, by the store's clock.
            db.execute(f"DELETE FROM forced_releases WHERE at < {sql_ago(FORCED_RETENTION_S)}")
            return before
