"""The exclusive take on MongoDB, shared by the leases part (a try) and the queue part (a waiter's
turn, and its fallback where no unique index allows an upsert): one ``find_one_and_update``, and the
lease its returned document says we took, its history event queued. Operations (see commands)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ...errors import LockHeldError
from ...models import Lease, LeaseEvent, LeaseRequest, parse_iso
from ..seed_document import EXPIRED
from .base import MongoBase, log, may_upsert
from .commands import DuplicateKey, Operation, find_one_and_update
from .documents import previous_lease, subdocument, take_pipeline
from .waiters import NO_LIVE_WAITERS

TAKEN = {"fence": 1, "takenAt": 1, "holder": 1}  # what a take reads back


def free_or_expired(mutex_id: str) -> dict[str, Any]:
    """The mutex, if it is free or its lease expired, and no live waiter is in line (waiters first:
    see the queue part)."""
    return {"mutexId": mutex_id, "$and": [
        {"$or": [{"taken": {"$ne": True}}, {"$expr": EXPIRED}]},
        {"$or": [{"waiters": {"$exists": False}}, {"$expr": NO_LIVE_WAITERS}]}]}


def take(store: MongoBase, request: LeaseRequest, waited_ms: int) -> Operation[Lease]:
    """Take the mutex iff it is free or expired and nobody waits (one findAndModify); else LockHeldError."""
    upsert = yield from may_upsert(store, request.mutex_id)
    try:
        doc = yield find_one_and_update(
            "mutexes", free_or_expired(request.mutex_id),
            take_pipeline(request.mutex_id, request.node_id, request.timeout_ms, request.holder), upsert=upsert,
            projection=TAKEN)
    except DuplicateKey:  # the unique index refused the insert: the mutex is held
        raise LockHeldError(request.mutex_id) from None
    if doc is None:  # no upsert (see above), and held
        raise LockHeldError(request.mutex_id)
    return taken(store, request, waited_ms, doc)


def taken(store: MongoBase, request: LeaseRequest, waited_ms: int, doc: dict[str, Any]) -> Lease:
    """The lease an acquire's returned document says we took; its history event queued."""
    taken_at = parse_iso(doc["takenAt"])
    took = subdocument(subdocument(doc, "holder"), "took")
    previous, previous_fence, late = previous_lease(took, taken_at) if took else (None, None, None)
    store.queue_event(LeaseEvent(request.mutex_id, "takeover" if took else "acquire", taken_at, request.node_id,
                                 int(doc["fence"]), request.holder, waited_ms=waited_ms, previous_holder=previous,
                                 previous_fence=previous_fence, late_ms=late))
    log.debug("acquired %s as %s (fence %s, %d ms)", request.mutex_id, request.node_id, doc["fence"],
              request.timeout_ms)
    return Lease(request.mutex_id, request.node_id, int(doc["fence"]), request.timeout_ms, taken_at,
                 taken_at + timedelta(milliseconds=request.timeout_ms))
