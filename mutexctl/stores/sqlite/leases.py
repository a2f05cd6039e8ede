"""Exclusive leases on SQLite: take, renew, release and break one, each one ``BEGIN IMMEDIATE``
transaction, expiry on the boot clock, the history written in the same transaction."""

from __future__ import annotations

from datetime import timedelta

from ...errors import LeaseExpiredError, LockHeldError
from ...logs import logger
from ...models import Holder, Lease, LeaseRequest, MutexState, WakeList, iso_ms, parse_iso
from ..common import released_late_error
from ..steps import FORCED_RETENTION_S
from . import events, waiters
from .base import SQLiteBase, loss, read_state
from .exclusive import LIVE, OURS, SAME_USER, HeldElsewhereError, take
from .rows import FORCED_COLUMNS
from .statements import Now, Operation, changed, row, run
from .times import SQL_NOW, sql_ago

log = logger("mutexctl.stores.sqlite")


class SQLiteLeases(SQLiteBase):
    def try_acquire(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        self._follow_path()
        try:
            lease = self._run(try_acquire(self, request, waited_ms, self._now()))
        except HeldElsewhereError as elsewhere:
            raise self._held_elsewhere(request.mutex_id, elsewhere.beacon) from None
        log.debug("acquired %s as %s (fence %s, %d ms)", request.mutex_id, request.node_id, lease.fence,
                  request.timeout_ms)
        return lease

    def renew(self, lease: Lease) -> Lease:
        if self._replaced():
            raise self._file_lost(lease.mutex_id, lease.node_id, lease.fence, "renew")
        renewed = self._run(renew(self, lease, self._now()))
        self.guard.refresh(lease.mutex_id, lease.fence, lease.timeout_ms, self._file, slot=False)
        return renewed

    def release(self, mutex_id: str, node_id: str, fence: int | None, *, reason: str | None = None,
                user: str | None = None) -> WakeList:
        self.guard.drop(mutex_id, fence)  # first: the next taker of this file may then bind it
        if self._replaced():
            raise self._file_lost(mutex_id, node_id, fence, "release")
        line, late = self._run(release(self, mutex_id, node_id, fence, self._now(), reason, user))
        if late is not None:  # (raised once the release has committed: it stands)
            raise late
        return line

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        return self._run(force_release(self, mutex_id, by_node, by, reason, self._now()))


def try_acquire(store: SQLiteBase, request: LeaseRequest, waited_ms: int, now: Now) -> Operation[Lease]:
    """Take the mutex if it is free or expired and nobody waits (waiters first: see the queue part)."""
    if store._has_waiters and (yield from waiters.someone_waits(request.mutex_id, store._boot, now.ns)):
        raise LockHeldError(request.mutex_id, (yield from read_state(store, request.mutex_id, now)))
    lease = yield from take(store, request, waited_ms, now)
    if lease is None:
        raise LockHeldError(request.mutex_id, (yield from read_state(store, request.mutex_id, now)))
    return lease


def renew(store: SQLiteBase, lease: Lease, now: Now) -> Operation[Lease]:
    expires = now.wall + timedelta(milliseconds=lease.timeout_ms)
    params = store._params(lease.mutex_id, lease.node_id, lease.fence, now.ns)
    params.update(expires_ns=now.ns + lease.timeout_ms * 1_000_000, expires_at=iso_ms(expires),
                  timeout=lease.timeout_ms)
    count = yield changed(f"UPDATE mutexes SET expiresNs = :expires_ns, expiresAt = :expires_at, "
                          f"timeout = :timeout WHERE {OURS} AND {LIVE}", params)
    if count != 1:
        raise (yield from loss(store, lease.mutex_id, lease.node_id, lease.fence, "renew", now))
    return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                 lease.local_deadline)


def release(store: SQLiteBase, mutex_id: str, node_id: str, fence: int | None, now: Now,
            reason: str | None = None, user: str | None = None) -> Operation[tuple[WakeList, LeaseExpiredError | None]]:
    """Free our lease; (its waiters in line, and the error to raise if it had already expired).
    Without a fence, ``user`` given: only a lease that user took (or whose user is not recorded)."""
    params = {**store._params(mutex_id, node_id, fence, now.ns), "user": user}
    found = yield row(f"UPDATE mutexes SET taken = 0 WHERE {OURS} AND {SAME_USER} "
                      f"RETURNING ({LIVE}), fence, takenAt, host, pid, user, command", params)
    if found is None:
        raise (yield from loss(store, mutex_id, node_id, fence, "release", now, user))
    if store._has_history:
        holder = Holder(found[3], found[4], found[5], found[6]) if found[3] is not None else None
        yield from events.record(store.history_retention_s, mutex_id, "release" if found[0] else "release-late",
                                 node_id, found[1], holder,
                                 held_ms=events.since_ms(parse_iso(found[2]) if found[2] else None, now.wall),
                                 reason=reason)
    line = (yield from waiters.in_line(mutex_id, store._boot, now.ns)) if store._has_waiters else ()
    return line, None if found[0] else released_late_error(mutex_id, found[1])


def force_release(store: SQLiteBase, mutex_id: str, by_node: str, by: Holder, reason: str,
                  now: Now) -> Operation[MutexState | None]:
    """The release and its record in one transaction: they commit together or not at all."""
    before = yield from read_state(store, mutex_id, now)
    if before is None or not before.taken:
        return None
    yield run("UPDATE mutexes SET taken = 0 WHERE mutexId = ?", (mutex_id,))
    yield run(f"INSERT INTO forced_releases ({FORCED_COLUMNS}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
              (mutex_id, by_node, by.user, by.host, reason, before.taken_by, before.fence))
    if store._has_history:
        yield from events.record(store.history_retention_s, mutex_id, "forced", by_node, None, by,
                                 previous_holder=before.taken_by, previous_fence=before.fence, reason=reason,
                                 held_ms=events.since_ms(before.since, now.wall))
    # SQLite has no TTL index: the history is pruned here, when it grows, by the store's clock.
    yield run(f"DELETE FROM forced_releases WHERE at < {sql_ago(FORCED_RETENTION_S)}")
    return before
