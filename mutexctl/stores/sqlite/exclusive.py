"""The exclusive take on SQLite, shared by the leases part (a try) and the queue part (a waiter's
turn): one statement inserts the mutex or takes it if it is free or expired, in the caller's
transaction; the host guard claims it; the history gets the event in the same transaction."""

from __future__ import annotations

from datetime import timedelta

from ...models import Lease, LeaseRequest, iso_ms
from . import events
from .base import SQLiteBase
from .guard import Beacon
from .rows import COLUMNS, holder_code
from .statements import Now, Operation, row, run

# One statement: insert a new mutex, or take an existing one only if it is free or expired.
# The WHERE of DO UPDATE is the compare; when it fails, RETURNING yields no row.
ACQUIRE = f"""
INSERT INTO mutexes ({COLUMNS}) VALUES (:id, 1, :at, :node, :timeout, :expires_at, 1, :boot, :expires_ns,
                                        :host, :pid, :user, :command, :exec)
ON CONFLICT (mutexId) DO UPDATE SET
    taken = 1, takenAt = :at, takenBy = :node, timeout = :timeout, expiresAt = :expires_at,
    fence = mutexes.fence + 1, bootId = :boot, expiresNs = :expires_ns,
    host = :host, pid = :pid, user = :user, command = :command, execMode = :exec,
    kind = NULL, slotLimit = NULL, writerWaiting = NULL, writerUntilNs = NULL, slotsAt = NULL
WHERE mutexes.taken = 0 OR mutexes.bootId IS NOT :boot OR mutexes.expiresNs <= :now_ns
RETURNING fence
"""
# Our lease: with its fence, that very lease; without one (a plain release, the seed's V), only a
# lease no running `mutexctl acquire -- CMD` supervises.
OURS = ("mutexId = :id AND taken = 1 AND takenBy = :node "
        "AND (fence = :fence OR (:fence IS NULL AND COALESCE(execMode, 0) <> 1))")
LIVE = "bootId = :boot AND expiresNs > :now_ns"
# A plain release by a user (:user) ends only a lease that user took: another user's needs its fence.
SAME_USER = "(:fence IS NOT NULL OR :user IS NULL OR COALESCE(user, '') IN ('', :user))"


class HeldElsewhereError(Exception):
    """Raised inside a take (rolling it back): the host guard found a live lease in another file."""

    def __init__(self, beacon: Beacon) -> None:
        super().__init__(beacon)
        self.beacon = beacon


def take(store: SQLiteBase, request: LeaseRequest, waited_ms: int, now: Now) -> Operation[Lease | None]:
    """The acquire itself, in the caller's transaction: None when the mutex is held."""
    mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
    expires = now.wall + timedelta(milliseconds=timeout_ms)
    before = yield row("SELECT taken, takenBy, fence, bootId, expiresNs FROM mutexes WHERE mutexId = ?", (mutex_id,))
    found = yield row(ACQUIRE, {
        "id": mutex_id, "at": iso_ms(now.wall), "node": node_id, "timeout": timeout_ms,
        "expires_at": iso_ms(expires), "boot": store._boot, "now_ns": now.ns,
        "expires_ns": now.ns + timeout_ms * 1_000_000, "host": holder.host, "pid": holder.pid,
        "user": holder.user, "command": holder.command, "exec": holder_code(holder)})
    if found is None:
        return None
    conflict = store.guard.claim(mutex_id, found[0], timeout_ms, store._file, slot=False)
    if conflict is not None:
        raise HeldElsewhereError(conflict)
    if store._has_slots:  # the slots of a semaphore or shared lock whose holders all left
        yield run("DELETE FROM slots WHERE mutexId = ?", (mutex_id,))
    if store._has_history:
        taken_over = before is not None and before[0]
        late = (now.ns - before[4]) // 1_000_000 if taken_over and before[3] == store._boot else None
        yield from events.record(store.history_retention_s, mutex_id, "takeover" if taken_over else "acquire",
                                 node_id, found[0], holder, waited_ms=waited_ms,
                                 previous_holder=before[1] if taken_over else None,
                                 previous_fence=before[2] if taken_over else None, late_ms=late)
    return Lease(mutex_id, node_id, found[0], timeout_ms, now.wall, expires)
