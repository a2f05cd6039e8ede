"""Semaphores and shared holds on SQLite; each operation one transaction.

A mutex whose slots are held keeps its ``mutexes`` row taken by ``mutexctl:semaphore`` (or
``mutexctl:shared``) until the latest slot's end (``expiresNs``), so an exclusive acquire — by this
version or an older one — waits for the last holder. The holders are rows of ``slots``, each with its
own fence and end on the boot clock. They count only while the row is the one their taker wrote
(``slotsAt = takenAt``): an older mutexctl taking the mutex over after the last slot ended voids them.
"""

from __future__ import annotations

from datetime import timedelta

from ...errors import LeaseExpiredError, LockHeldError
from ...models import EXCLUSIVE, SEMAPHORE, SHARED, Holder, Lease, LeaseRequest, MutexState, iso_ms
from ..common import released_late_error, slot_loss_error, slot_owner, token_mode_slot
from ..steps import FORCED_RETENTION_S
from . import events, waiters
from .base import SQLiteBase, read_state
from .exclusive import HeldElsewhereError
from .rows import COLUMNS, FORCED_COLUMNS, holder_code
from .statements import Now, Operation, row, run
from .times import SQL_NOW, sql_ago

ANNOUNCE_NS = 3_000_000_000  # a waiting writer's announcement holds off new shared holds this long

_SLOT = "mutexId, fence, node, bootId, expiresNs, expiresAt, since, timeout, host, pid, user, command, execMode"
_TAKE = f"""
INSERT INTO mutexes ({COLUMNS}, kind, slotLimit, writerWaiting, writerUntilNs, slotsAt)
VALUES (:id, 1, :at, :owner, :timeout, :expires_at, :fence, :boot, :expires_ns, NULL, NULL, NULL, NULL, 0,
        :kind, :limit, NULL, NULL, :at)
ON CONFLICT (mutexId) DO UPDATE SET
    taken = 1, takenAt = :at, takenBy = :owner, timeout = :timeout, expiresAt = :expires_at, fence = :fence,
    bootId = :boot, expiresNs = :expires_ns, host = NULL, pid = NULL, user = NULL, command = NULL, execMode = 0,
    kind = :kind, slotLimit = :limit, slotsAt = :at,
    writerWaiting = CASE WHEN :keep_writer THEN writerWaiting END,
    writerUntilNs = CASE WHEN :keep_writer THEN writerUntilNs END
"""


class SQLiteSlots(SQLiteBase):
    def try_acquire_slot(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        self._follow_path()
        try:
            return self._run(take_slot(self, request, waited_ms, self._now()))
        except HeldElsewhereError as elsewhere:
            raise self._held_elsewhere(request.mutex_id, elsewhere.beacon) from None

    def renew_slot(self, lease: Lease) -> Lease:
        if self._replaced():
            raise self._file_lost(lease.mutex_id, lease.node_id, lease.fence, "renew")
        renewed = self._run(renew_slot(self, lease, self._now()))
        self.guard.refresh(lease.mutex_id, lease.fence, lease.timeout_ms, self._file, slot=True)
        return renewed

    def release_slot(self, mutex_id: str, node_id: str, fence: int | None, *, reason: str | None = None,
                     user: str | None = None) -> None:
        self.guard.drop(mutex_id, fence)
        if self._replaced():
            raise self._file_lost(mutex_id, node_id, fence, "release")
        late = self._run(release_slot(self, mutex_id, node_id, fence, self._now(), reason, user))
        if late is not None:  # (raised once the release has committed: it stands)
            raise late

    def force_release_slots(self, mutex_id: str, by_node: str, by: Holder, reason: str, *, node: str | None,
                            fence: int | None) -> MutexState | None:
        return self._run(force_release_slots(self, mutex_id, by_node, by, reason, node, fence, self._now()))

    def announce_writer(self, mutex_id: str, node_id: str) -> None:
        self._run(announce(mutex_id, node_id, self._now()))

    def withdraw_writer(self, mutex_id: str, node_id: str) -> None:
        self._run(withdraw(mutex_id, node_id))


def withdraw(mutex_id: str, node_id: str) -> Operation[None]:
    yield run("UPDATE mutexes SET writerWaiting = NULL, writerUntilNs = NULL WHERE mutexId = ? AND writerWaiting = ?",
              (mutex_id, node_id))


def take_slot(store: SQLiteBase, request: LeaseRequest, waited_ms: int, now: Now) -> Operation[Lease]:
    mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
    kind, limit = request.kind, request.limit
    state = yield from read_state(store, mutex_id, now)
    if state is not None and _refused(state, kind, limit):
        raise LockHeldError(mutex_id, state)
    if store._has_waiters and (yield from waiters.someone_waits(mutex_id, store._boot, now.ns)):
        raise LockHeldError(mutex_id, state)  # exclusive waiters in line go first: fair across kinds
    current = state is not None and state.kind != EXCLUSIVE
    if current:  # ended slots make room
        yield run("DELETE FROM slots WHERE mutexId = ? AND (bootId IS NOT ? OR expiresNs <= ?)",
                  (mutex_id, store._boot, now.ns))
    else:  # void slots of an earlier time
        yield run("DELETE FROM slots WHERE mutexId = ?", (mutex_id,))
    fence = (state.fence if state is not None else 0) + 1
    ends = now.wall + timedelta(milliseconds=timeout_ms)
    yield run(f"INSERT INTO slots ({_SLOT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (mutex_id, fence, node_id, store._boot, now.ns + timeout_ms * 1_000_000, iso_ms(ends),
               iso_ms(now.wall), timeout_ms, holder.host, holder.pid, holder.user, holder.command,
               holder_code(holder)))
    conflict = store.guard.claim(mutex_id, fence, timeout_ms, store._file, slot=True)
    if conflict is not None:
        raise HeldElsewhereError(conflict)
    yield from seed_view(store, mutex_id, now, fence=fence, kind=kind, limit=limit, keep_writer=current)
    if store._has_history:
        yield from events.record(store.history_retention_s, mutex_id, "acquire", node_id, fence, holder,
                                 waited_ms=waited_ms, slot=kind)
    return Lease(mutex_id, node_id, fence, timeout_ms, now.wall, ends, kind=kind, limit=limit)


def renew_slot(store: SQLiteBase, lease: Lease, now: Now) -> Operation[Lease]:
    state = yield from read_state(store, lease.mutex_id, now)
    if state is None or not any(s.fence == lease.fence and s.node == lease.node_id for s in state.slots):
        raise slot_loss_error(lease.mutex_id, lease.node_id, lease.fence, "renew", state)
    ends = now.wall + timedelta(milliseconds=lease.timeout_ms)
    yield run("UPDATE slots SET expiresNs = ?, expiresAt = ?, timeout = ? WHERE mutexId = ? AND fence = ?",
              (now.ns + lease.timeout_ms * 1_000_000, iso_ms(ends), lease.timeout_ms, lease.mutex_id, lease.fence))
    yield from seed_view(store, lease.mutex_id, now)
    return lease._replace(expires_at=ends)


def release_slot(store: SQLiteBase, mutex_id: str, node_id: str, fence: int | None, now: Now,
                 reason: str | None = None, user: str | None = None) -> Operation[LeaseExpiredError | None]:
    """End our slot; the error to raise if it had already expired (the release stands)."""
    state = yield from read_state(store, mutex_id, now)
    if fence is None and state is not None:  # the seed's V for a slot
        fence = token_mode_slot(state, node_id, user)
    found = None
    if state is not None and state.kind != EXCLUSIVE and fence is not None:
        found = yield row("SELECT bootId = ? AND expiresNs > ? FROM slots WHERE mutexId = ? AND fence = ? "
                          "AND node = ?", (store._boot, now.ns, mutex_id, fence, node_id))
    if found is None:
        raise slot_loss_error(mutex_id, node_id, fence, "release", state, user)
    yield run("DELETE FROM slots WHERE mutexId = ? AND fence = ?", (mutex_id, fence))
    yield from seed_view(store, mutex_id, now)
    if store._has_history:
        ended = next((s for s in state.slots if s.fence == fence), None) if state is not None else None
        yield from events.record(store.history_retention_s, mutex_id, "release" if found[0] else "release-late",
                                 node_id, fence, ended.holder if ended else None, slot=state.kind if state else None,
                                 held_ms=events.since_ms(ended.since if ended else None, now.wall), reason=reason)
    return None if found[0] else released_late_error(mutex_id, fence)


def force_release_slots(store: SQLiteBase, mutex_id: str, by_node: str, by: Holder, reason: str, node: str | None,
                        fence: int | None, now: Now) -> Operation[MutexState | None]:
    before = yield from read_state(store, mutex_id, now)
    chosen = [s for s in before.slots if node in (None, s.node) and fence in (None, s.fence)] \
        if before is not None else []
    if not chosen:
        return None
    for gone in chosen:
        yield run("DELETE FROM slots WHERE mutexId = ? AND fence = ?", (mutex_id, gone.fence))
        yield run(f"INSERT INTO forced_releases ({FORCED_COLUMNS}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
                  (mutex_id, by_node, by.user, by.host, reason, gone.node, gone.fence))
        if store._has_history:
            yield from events.record(store.history_retention_s, mutex_id, "forced", by_node, None, by,
                                     previous_holder=gone.node, previous_fence=gone.fence, reason=reason,
                                     slot=before.kind if before else None,
                                     held_ms=events.since_ms(gone.since, now.wall))
    yield run(f"DELETE FROM forced_releases WHERE at < {sql_ago(FORCED_RETENTION_S)}")
    yield from seed_view(store, mutex_id, now)
    return before


def announce(mutex_id: str, node_id: str, now: Now) -> Operation[None]:
    yield run("UPDATE mutexes SET writerWaiting = ?, writerUntilNs = ? WHERE mutexId = ? AND taken = 1 "
              "AND ((kind = ? AND takenBy = ?) OR (kind = ? AND takenBy = ?)) AND slotsAt = takenAt",
              (node_id, now.ns + ANNOUNCE_NS, mutex_id, SHARED, slot_owner(SHARED), SEMAPHORE,
               slot_owner(SEMAPHORE)))


def seed_view(store: SQLiteBase, mutex_id: str, now: Now, *, fence: int | None = None, kind: str | None = None,
              limit: int | None = None, keep_writer: bool = True) -> Operation[None]:
    """Make the mutex row tell what its live slots hold: taken until the latest one ends (with
    ``kind``: the row of a new holder, ``fence`` the mutex's new fence); free when none is left."""
    last = (yield row("SELECT max(expiresNs) FROM slots WHERE mutexId = ? AND bootId = ? AND expiresNs > ?",
                      (mutex_id, store._boot, now.ns)))[0]
    if last is None:
        yield run("UPDATE mutexes SET taken = 0 WHERE mutexId = ?", (mutex_id,))
        return
    left_ms = -((now.ns - last) // 1_000_000)
    times = {"at": iso_ms(now.wall), "timeout": left_ms,
             "expires_at": iso_ms(now.wall + timedelta(milliseconds=left_ms)), "expires_ns": last, "boot": store._boot,
             "id": mutex_id}
    if kind is not None:
        yield run(_TAKE, {**times, "owner": slot_owner(kind), "fence": fence, "kind": kind, "limit": limit,
                          "keep_writer": keep_writer})
    else:
        yield run("UPDATE mutexes SET takenAt = :at, slotsAt = :at, timeout = :timeout, expiresAt = :expires_at, "
                  "expiresNs = :expires_ns WHERE mutexId = :id", times)


def _refused(state: MutexState, kind: str, limit: int | None) -> bool:
    """Whether a new holder of ``kind`` (and ``limit``) cannot join ``state`` now."""
    if state.kind == EXCLUSIVE:
        return state.state == "held"  # a live exclusive lease, or one whose end cannot be read
    if state.slots and (state.kind != kind or state.limit != limit):
        return True  # held another way: the caller tells it apart
    if state.writer_waiting is not None:
        return True  # an exclusive waiter is next: new slots wait for it (it waits for these to end)
    return kind == SEMAPHORE and limit is not None and len(state.slots) >= limit
