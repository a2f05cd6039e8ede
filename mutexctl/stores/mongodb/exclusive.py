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
from .commands import DuplicateKey, Operation, find, find_one_and_update, update_one
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
    return taken(store, request, waited_ms, (yield from continued_fence(store, request, doc)))


def continued_fence(store: MongoBase, request: LeaseRequest, doc: dict[str, Any]) -> Operation[dict[str, Any]]:
    """A take that got fence 1 took a document without a fence: a new one, or one another service
    replaced (a ``replaceOne`` drops every field it does not write) or deleted and wrote anew. The
    fence goes on after the highest this mutex had on record (the history, kept history_retention,
    and this process's events not yet written there), so a fence never goes back. Only this path pays
    the extra read (a brand-new document does not: the take's pipeline tells, ``holder.fenceless``);
    the lease is ours meanwhile, so the raise cannot race another take."""
    if doc.get("fence") != 1 or subdocument(doc, "holder").get("fenceless") is False:
        return doc  # (False: a new document, whose fence rightly starts at 1; a waiter's take says nothing)
    pending = [e.get("fence") for e in store.pending_for(request.mutex_id)]
    found = yield find("history", {"mutexId": request.mutex_id, "fence": {"$type": "number"}}, {"fence": 1},
                       sort=[("fence", -1)], limit=1)
    high = max([f for f in [*pending, *(d.get("fence") for d in found)] if isinstance(f, int)], default=0)
    if high < 1:
        return doc
    raised = yield update_one("mutexes", {"mutexId": request.mutex_id, "taken": True, "takenBy": request.node_id,
                                          "takenAt": doc["takenAt"], "fence": 1}, {"$set": {"fence": high + 1}})
    return {**doc, "fence": high + 1} if raised else doc


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
