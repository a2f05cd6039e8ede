"""Leases on SQLite: each operation one ``BEGIN IMMEDIATE`` transaction, expiry on the boot clock."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import HeldOnHostError, LockHeldError, NotOwnerError, StoreError
from ...logs import logger
from ...models import (
    EXCLUSIVE,
    SEMAPHORE,
    SHARED,
    ForcedRelease,
    Holder,
    Lease,
    MutexState,
    OnceMarker,
    Overview,
    SchemaState,
    SlotHolder,
    Turn,
    WakeList,
    iso_ms,
    parse_iso,
)
from ..common import loss_error, newer_store_error, released_late_error, slot_owner, waiting_turn
from ..steps import FORCED_RETENTION_S, SCHEMA_VERSION
from . import events, queue
from .connection import SQL_NOW, SQLiteBase, read_schema, sql_ago
from .files import carry_fence, raise_fence
from .guard import Beacon

log = logger("mutexctl.stores.sqlite")

COLUMNS = ("mutexId, taken, takenAt, takenBy, timeout, expiresAt, fence, bootId, expiresNs, host, pid, user, command, "
           "execMode")
SLOT_COLUMNS = ("kind", "slotLimit", "writerWaiting", "writerUntilNs", "slotsAt")

# One statement: insert a new mutex, or take an existing one only if it is free or expired.
# The WHERE of DO UPDATE is the compare; when it fails, RETURNING yields no row.
_ACQUIRE = f"""
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
_OURS = ("mutexId = :id AND taken = 1 AND takenBy = :node "
         "AND (fence = :fence OR (:fence IS NULL AND COALESCE(execMode, 0) = 0))")
_LIVE = "bootId = :boot AND expiresNs > :now_ns"
_FORCED = "mutexId, at, byNode, byUser, byHost, reason, previousHolder, previousFence"


class HeldElsewhereError(Exception):
    """Raised inside a take (rolling it back): the host guard found a live lease in another file."""

    def __init__(self, beacon: Beacon) -> None:
        super().__init__(beacon)
        self.beacon = beacon


class SQLiteLeases(SQLiteBase):
    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *,
                    waited_ms: int = 0) -> Lease:
        self._follow_path()
        try:
            with self._transaction() as db:
                now_ns = self._now_ns()
                if self._has_waiters and queue.someone_waits(db, mutex_id, self._boot, now_ns):
                    raise LockHeldError(mutex_id, self._state(db, mutex_id))  # (waiters first: see wait_turn)
                lease = self._take(db, mutex_id, node_id, timeout_ms, holder, waited_ms, now_ns)
                if lease is None:
                    raise LockHeldError(mutex_id, self._state(db, mutex_id))
        except HeldElsewhereError as elsewhere:
            raise self._held_elsewhere(mutex_id, elsewhere.beacon) from None
        log.debug("acquired %s as %s (fence %s, %d ms)", mutex_id, node_id, lease.fence, timeout_ms)
        return lease

    def wait_turn(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *, token: str,
                  waited_ms: int) -> Turn:
        self._follow_path()
        try:
            with self._transaction() as db:
                now_ns = self._now_ns()
                ahead = queue.join(db, mutex_id, token, node_id, holder, self._boot, now_ns)
                if ahead == 0:
                    lease = self._take(db, mutex_id, node_id, timeout_ms, holder, waited_ms, now_ns)
                    if lease is not None:
                        queue.leave(db, mutex_id, token)
                        return Turn(lease)
                return waiting_turn(ahead + 1, self._state(db, mutex_id))
        except HeldElsewhereError as elsewhere:  # (it stops at its next renewal: look twice a second)
            return Turn(None, 1, held_for_ms=1000, state=self._held_elsewhere(mutex_id, elsewhere.beacon).state)

    def _held_elsewhere(self, mutex_id: str, beacon: Beacon) -> HeldOnHostError:
        """The take was rolled back: a process on this host holds the mutex in the file that had this
        path before. The fence here moves past that lease's, so the next one never goes back."""
        if beacon.fence:
            with self._transaction() as db:
                raise_fence(db, mutex_id, beacon.fence)
        with self._transaction(write=False) as db:
            state = self._state(db, mutex_id)
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

    def leave_queue(self, mutex_id: str, token: str) -> None:
        if self._has_waiters:
            with self._transaction() as db:
                queue.leave(db, mutex_id, token)

    def _take(self, db: sqlite3.Connection, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder,
              waited_ms: int, now_ns: int) -> Lease | None:
        """The acquire itself, in the caller's transaction: None when the mutex is held."""
        now = datetime.now(UTC)
        expires = now + timedelta(milliseconds=timeout_ms)
        before = db.execute("SELECT taken, takenBy, fence, bootId, expiresNs FROM mutexes WHERE mutexId = ?",
                            (mutex_id,)).fetchone()
        row = db.execute(_ACQUIRE, {
            "id": mutex_id, "at": iso_ms(now), "node": node_id, "timeout": timeout_ms,
            "expires_at": iso_ms(expires), "boot": self._boot, "now_ns": now_ns,
            "expires_ns": now_ns + timeout_ms * 1_000_000, "host": holder.host, "pid": holder.pid,
            "user": holder.user, "command": holder.command, "exec": int(holder.exec_mode)}).fetchone()
        if row is None:
            return None
        conflict = self.guard.claim(mutex_id, row[0], timeout_ms, self._file, slot=False)
        if conflict is not None:
            raise HeldElsewhereError(conflict)
        if self._has_slots:  # the slots of a semaphore or shared lock whose holders all left
            db.execute("DELETE FROM slots WHERE mutexId = ?", (mutex_id,))
        if self._has_history:
            taken_over = before is not None and before[0]
            late = (now_ns - before[4]) // 1_000_000 if taken_over and before[3] == self._boot else None
            events.record(db, self.history_retention_s, mutex_id, "takeover" if taken_over else "acquire",
                          node_id, row[0], holder, waited_ms=waited_ms,
                          previous_holder=before[1] if taken_over else None,
                          previous_fence=before[2] if taken_over else None, late_ms=late)
        return Lease(mutex_id, node_id, row[0], timeout_ms, now, expires)

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
                                 f"timeout = :timeout WHERE {_OURS} AND {_LIVE}", params).rowcount
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
            row = db.execute(f"UPDATE mutexes SET taken = 0 WHERE {_OURS} "
                             f"RETURNING ({_LIVE}), fence, takenAt, host, pid, user, command", params).fetchone()
            if row is None:
                raise self._loss(db, mutex_id, node_id, fence, "release")
            if self._has_history:
                holder = Holder(row[3], row[4], row[5], row[6]) if row[3] is not None else None
                events.record(db, self.history_retention_s, mutex_id, "release" if row[0] else "release-late",
                              node_id, row[1], holder,
                              held_ms=events.since_ms(parse_iso(row[2]) if row[2] else None, datetime.now(UTC)))
            line = queue.in_line(db, mutex_id, self._boot, params["now_ns"]) if self._has_waiters else ()
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
            db.execute(f"INSERT INTO forced_releases ({_FORCED}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
                       (mutex_id, by_node, by.user, by.host, reason, before.taken_by, before.fence))
            if self._has_history:
                events.record(db, self.history_retention_s, mutex_id, "forced", by_node, None, by,
                              previous_holder=before.taken_by, previous_fence=before.fence, reason=reason,
                              held_ms=events.since_ms(before.since, datetime.now(UTC)))
            # SQLite has no TTL index: the history is pruned here, when it grows, by the store's clock.
            db.execute(f"DELETE FROM forced_releases WHERE at < {sql_ago(FORCED_RETENTION_S)}")
            return before

    def get(self, mutex_id: str) -> MutexState | None:
        with self._transaction(write=False) as db:
            return self._state(db, mutex_id)

    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Overview:
        with self._transaction(write=False) as db:  # one snapshot of all of it
            rows = db.execute(f"SELECT {self._select} FROM mutexes WHERE (:id IS NULL OR mutexId = :id) "
                              "ORDER BY mutexId", {"id": mutex_id}).fetchall()
            now_ns, now = self._now_ns(), datetime.now(UTC)
            states = self._with_waiters(db, self._with_slots(db, [self._from_row(row, now_ns, now) for row in rows],
                                                             now_ns), now_ns)
            markers = _markers(db, mutex_id) if self._has_slots else ()
            happened = events.read(db, None if mutex_id is None else [mutex_id], None, None, recent) \
                if recent and self._has_history else []
            return Overview(tuple(states), _forced(db, mutex_id, forced_limit), read_schema(db), now, markers,
                            tuple(happened))

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
        """The columns to read (a read-only file from before a column existed reads it as NULL)."""
        return ", ".join([COLUMNS.replace("execMode", self._columns["execMode"]),
                          *(self._columns[c] for c in SLOT_COLUMNS)])

    def _params(self, mutex_id: str, node_id: str, fence: int | None, now_ns: int) -> dict[str, Any]:
        return {"id": mutex_id, "node": node_id, "fence": fence, "boot": self._boot, "now_ns": now_ns}

    def _loss(self, db: sqlite3.Connection, mutex_id: str, node_id: str, fence: int | None,
              verb: str) -> NotOwnerError:
        return loss_error(mutex_id, node_id, fence, verb, self._state(db, mutex_id))  # read in the same transaction

    def _state(self, db: sqlite3.Connection, mutex_id: str) -> MutexState | None:
        row = db.execute(f"SELECT {self._select} FROM mutexes WHERE mutexId = ?", (mutex_id,)).fetchone()
        if row is None:
            return None
        now_ns = self._now_ns()
        return self._with_waiters(db, self._with_slots(db, [self._from_row(row, now_ns, datetime.now(UTC))],
                                                       now_ns), now_ns)[0]

    def _from_row(self, row: tuple[Any, ...], now_ns: int, now: datetime) -> MutexState:
        (mutex_id, taken, taken_at, taken_by, timeout, expires_at, fence, boot, expires_ns,
         host, pid, user, command, exec_mode, kind, limit, writer, writer_until_ns, slots_at) = row
        remaining = None
        if taken:
            # Rounded up, so that a lease with any time left never reads as 0 ms (expired).
            remaining = max(0, -((now_ns - expires_ns) // 1_000_000)) if boot == self._boot else 0
        holder = Holder(host, pid, user, command, bool(exec_mode)) if host is not None else None
        state = MutexState(mutex_id, bool(taken), taken_by, parse_iso(taken_at) if taken_at else None,
                           parse_iso(expires_at) if expires_at else None, timeout, fence, holder, now, remaining,
                           since=parse_iso(taken_at) if taken_at else None)
        # Slots count while the row is still the one their taker wrote (see SQLiteSlots).
        if taken and kind in (SEMAPHORE, SHARED) and taken_by == slot_owner(kind) and slots_at == taken_at:
            waiting = writer if writer_until_ns is not None and boot == self._boot and writer_until_ns > now_ns \
                else None
            state = state._replace(kind=kind, limit=limit, holder=None, since=None, writer_waiting=waiting)
        return state

    def _with_waiters(self, db: sqlite3.Connection, states: list[MutexState], now_ns: int) -> list[MutexState]:
        if not self._has_waiters or not states:
            return states
        names = [s.mutex_id for s in states] if len(states) <= 500 else \
            [r[0] for r in db.execute("SELECT DISTINCT mutexId FROM waiters")]
        found = queue.waiters_of(db, names, self._boot, now_ns)
        return [s._replace(waiters=tuple(found[s.mutex_id])) if s.mutex_id in found else s for s in states]

    def _with_slots(self, db: sqlite3.Connection, states: list[MutexState], now_ns: int) -> list[MutexState]:
        """The live holders of every semaphore and shared lock among ``states``, in one query."""
        multi = [s.mutex_id for s in states if s.kind != EXCLUSIVE]
        if not multi:
            return states
        marks = ", ".join("?" for _ in multi)
        rows = db.execute(f"SELECT mutexId, node, fence, since, expiresAt, expiresNs, timeout, host, pid, user, "
                          f"command, execMode FROM slots WHERE mutexId IN ({marks}) AND bootId = ? AND expiresNs > ? "
                          "ORDER BY fence", (*multi, self._boot, now_ns)).fetchall()
        found: dict[str, list[SlotHolder]] = {}
        for (mutex_id, node, fence, since, expires_at, expires_ns, timeout, host, pid, user, command,
             exec_mode) in rows:
            found.setdefault(mutex_id, []).append(SlotHolder(
                node, fence, parse_iso(since), parse_iso(expires_at), -((now_ns - expires_ns) // 1_000_000), timeout,
                Holder(host, pid, user, command, bool(exec_mode)) if host is not None else None))
        return [s._replace(slots=tuple(found.get(s.mutex_id, ())),
                           remaining_ms=max((h.remaining_ms for h in found.get(s.mutex_id, ())), default=0))
                if s.kind != EXCLUSIVE else s for s in states]


def _forced(db: sqlite3.Connection, mutex_id: str | None, limit: int) -> tuple[ForcedRelease, ...]:
    rows = db.execute(f"SELECT {_FORCED} FROM forced_releases WHERE (? IS NULL OR mutexId = ?) "
                      "ORDER BY id DESC LIMIT ?", (mutex_id, mutex_id, limit)).fetchall()
    return tuple(ForcedRelease(r[0], parse_iso(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows)


MARKER_COLUMNS = "mutexId, key, at, byNode, fence, host, pid, user, command"


def marker_of(row: tuple[Any, ...]) -> OnceMarker:
    return OnceMarker(row[0], row[1], parse_iso(row[2]), row[3], row[4], Holder(row[5], row[6], row[7], row[8]))


def _markers(db: sqlite3.Connection, mutex_id: str | None, limit: int = 50) -> tuple[OnceMarker, ...]:
    rows = db.execute(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE (? IS NULL OR mutexId = ?) "
                      "ORDER BY at DESC LIMIT ?", (mutex_id, mutex_id, limit)).fetchall()
    return tuple(marker_of(r) for r in rows)
