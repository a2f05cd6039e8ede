"""Rows of the SQLite store read into records: the column lists, a ``mutexes`` row as a MutexState,
the live ``slots`` rows of semaphores and shared holds, forced-release records and run-once markers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import (
    CLI,
    EXCLUSIVE,
    SEMAPHORE,
    SERVICE,
    SHARED,
    ForcedRelease,
    Holder,
    MutexState,
    OnceMarker,
    SlotHolder,
    parse_iso,
)
from ..common import slot_owner
from .statements import Operation, rows

COLUMNS = ("mutexId, taken, takenAt, takenBy, timeout, expiresAt, fence, bootId, expiresNs, host, pid, user, command, "
           "execMode")
SLOT_COLUMNS = ("kind", "slotLimit", "writerWaiting", "writerUntilNs", "slotsAt")
FORCED_COLUMNS = "mutexId, at, byNode, byUser, byHost, reason, previousHolder, previousFence"


# The execMode column: 1 exec mode (a token-less release cannot end it), 2 a library service, 0 the
# CLI's token mode, NULL not known (a file from before the column, or before 2 was written).
_VIA_CODES = {CLI: 0, SERVICE: 2}
_VIA_OF = {0: CLI, 1: None, 2: SERVICE}


def holder_code(holder: Holder) -> int | None:
    """A holder's execMode value (see above)."""
    return 1 if holder.exec_mode else _VIA_CODES.get(holder.via or "")


def holder_of(host: str | None, pid: int, user: str, command: str, code: int | None) -> Holder | None:
    if host is None:
        return None
    return Holder(host, pid, user, command, code == 1, _VIA_OF.get(code) if code is not None else None)


def mutex_state(row: tuple[Any, ...], now_ns: int, now: datetime, this_boot: str) -> MutexState:
    """A ``mutexes`` row (its COLUMNS, then SLOT_COLUMNS) as the mutex's state now; a lease written in
    another boot (``bootId`` not ``this_boot``) has ended."""
    (mutex_id, taken, taken_at, taken_by, timeout, expires_at, fence, boot, expires_ns,
     host, pid, user, command, exec_mode, kind, limit, writer, writer_until_ns, slots_at) = row
    remaining = None
    if taken:
        # Rounded up, so that a lease with any time left never reads as 0 ms (expired).
        remaining = max(0, -((now_ns - expires_ns) // 1_000_000)) if boot == this_boot else 0
    start = parse_iso(taken_at) if taken_at else None
    expires = parse_iso(expires_at) if expires_at else None
    # Slots count while the row is still the one their taker wrote (see the slots part).
    if taken and kind in (SEMAPHORE, SHARED) and taken_by == slot_owner(kind) and slots_at == taken_at:
        waiting = writer if writer_until_ns is not None and boot == this_boot and writer_until_ns > now_ns \
            else None
        return MutexState(mutex_id, True, taken_by, start, expires, timeout, fence, None, now, remaining, kind=kind,
                          limit=limit, writer_waiting=waiting)
    return MutexState(mutex_id, bool(taken), taken_by, start, expires, timeout, fence,
                      holder_of(host, pid, user, command, exec_mode), now, remaining, since=start)


def with_slots(states: list[MutexState], boot: str, now_ns: int) -> Operation[list[MutexState]]:
    """The live holders of every semaphore and shared lock among ``states``, in one query."""
    multi = [s.mutex_id for s in states if s.kind != EXCLUSIVE]
    if not multi:
        return states
    marks = ", ".join("?" for _ in multi)
    found_rows = yield rows(f"SELECT mutexId, node, fence, since, expiresAt, expiresNs, timeout, host, pid, user, "
                            f"command, execMode FROM slots WHERE mutexId IN ({marks}) AND bootId = ? AND "
                            "expiresNs > ? ORDER BY fence", (*multi, boot, now_ns))
    found: dict[str, list[SlotHolder]] = {}
    for (mutex_id, node, fence, since, expires_at, expires_ns, timeout, host, pid, user, command,
         exec_mode) in found_rows:
        found.setdefault(mutex_id, []).append(SlotHolder(
            node, fence, parse_iso(since), parse_iso(expires_at), -((now_ns - expires_ns) // 1_000_000), timeout,
            holder_of(host, pid, user, command, exec_mode)))
    return [s._replace(slots=tuple(found.get(s.mutex_id, ())),
                       remaining_ms=max((h.remaining_ms for h in found.get(s.mutex_id, ())), default=0))
            if s.kind != EXCLUSIVE else s for s in states]


def forced_records(mutex_id: str | None, limit: int) -> Operation[tuple[ForcedRelease, ...]]:
    found = yield rows(f"SELECT {FORCED_COLUMNS} FROM forced_releases WHERE (? IS NULL OR mutexId = ?) "
                       "ORDER BY id DESC LIMIT ?", (mutex_id, mutex_id, limit))
    return tuple(ForcedRelease(r[0], parse_iso(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in found)


MARKER_COLUMNS = "mutexId, key, at, byNode, fence, host, pid, user, command"


def marker_of(row: tuple[Any, ...]) -> OnceMarker:
    return OnceMarker(row[0], row[1], parse_iso(row[2]), row[3], row[4], Holder(row[5], row[6], row[7], row[8]))


def once_markers(mutex_id: str | None, limit: int = 50) -> Operation[tuple[OnceMarker, ...]]:
    found = yield rows(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE (? IS NULL OR mutexId = ?) "
                       "ORDER BY at DESC LIMIT ?", (mutex_id, mutex_id, limit))
    return tuple(marker_of(r) for r in found)
