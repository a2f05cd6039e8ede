"""Leader election over a lease (etcdctl's ``elect``, consul's ``lock -n 1``, client-go's leader
election): the leader is the holder of the election's exclusive lease, taken by its candidates first
come, first served (the lease's queue); its term is the lease's fence, higher at every new leader; the
value it announces is recorded with that fence (``LeaderRecords``), so nobody ever sees a value under
another leader's term. A deposed leader learns it as any holder does: its next renewal is refused, and
``lock``'s block (or exec mode's command) is stopped before the lease could pass on.

The flows here are written once and driven by the thread API (``Service``) and the event loop's
(``AsyncService``) alike."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from .flows import Flow, Handed, call, nap
from .models import EXCLUSIVE, LeaderRecord, Lease, LeaseEvent, MutexState


class Leader(NamedTuple):
    """An election's leader now: its node, value (None: not announced yet), term (the fence), since."""

    name: str
    node: str
    value: str | None
    term: int
    since: datetime | None


def announce_flow(lease: Lease, value: str) -> Flow[bool]:
    """Record ``value`` for the term of ``lease`` (right after it was taken)."""
    written: bool = yield from call("record_leader", lease.mutex_id, lease.node_id, lease.fence, value)
    return written


def leader_flow(name: str) -> Flow[Leader | None]:
    """The leader now (None: nobody leads): one read of the lease, one of the announcement."""
    _, leader = yield from _read(name)
    return leader


def _read(name: str) -> Flow[tuple[int, Leader | None]]:
    """The lease's fence (the last term there was; 0: never taken) and the leader now."""
    state: MutexState | None = yield from call("get", name)
    fence = state.fence if state is not None else 0
    if state is None or state.kind != EXCLUSIVE or state.state != "held" or not state.taken_by:
        return fence, None
    record: LeaderRecord | None = yield from call("leader_record", name)
    value = record.value if record is not None and record.fence == state.fence and record.node == state.taken_by \
        else None
    return fence, Leader(name, state.taken_by, value, state.fence, state.since or state.taken_at)


def observe_flow(name: str, interval_s: float) -> Flow[None]:
    """Hand out the leader now, then each change (a new term, its value once announced, nobody
    leading), in term order, one read every ``interval_s``. Terms that began and ended between two
    reads are filled in from the lease history (their node and start; their value is not kept); a new
    term read without its value waits one more read for it."""
    shown: tuple[int, str | None] | None = None
    last_term, first, waited = 0, True, False
    while True:
        fence, leader = yield from _read(name)
        key = None if leader is None else (leader.term, leader.value)
        if first:
            yield Handed(leader)
            shown, last_term, first = key, fence, False
        elif leader is not None and leader.value is None and key != shown and not waited:
            waited = True  # taken a moment ago: its announcement comes next
        elif fence >= last_term:  # (never back in term order)
            waited = False
            upto = fence if leader is not None else fence + 1
            missed = (yield from _terms_between(name, last_term, upto)) if upto > last_term + 1 else []
            for term in missed:
                yield Handed(term)
            if key != shown or missed:
                yield Handed(leader)
            shown, last_term = key, fence
        yield from nap(interval_s)


def _terms_between(name: str, after: int, before: int) -> Flow[list[Leader]]:
    """The terms after ``after`` and before ``before`` that the history tells (each taking of the lease)."""
    # (each term leaves an acquire and a release or loss, newest first: room for both, and a few more)
    events: list[LeaseEvent] = yield from call("history", [name], limit=min(2 * (before - after) + 10, 1000))
    taken = {e.fence: e for e in events if e.kind in ("acquire", "takeover") and e.slot is None
             and e.fence is not None and after < e.fence < before and e.node}
    return [Leader(name, str(taken[f].node), None, f, taken[f].at) for f in sorted(taken)]
