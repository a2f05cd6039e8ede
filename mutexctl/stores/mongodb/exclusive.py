"""The exclusive take on MongoDB, shared by the leases part (a try) and the queue part (a waiter's
turn, and its fallback where no unique index allows an upsert): one ``find_one_and_update``, and the
lease its returned document says we took, its history event queued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import LockHeldError
from ...models import Holder, Lease, LeaseEvent, parse_iso
from ..seed_document import EXPIRED
from .base import MongoBase, log
from .documents import previous_lease, subdocument, take_pipeline
from .waiters import NO_LIVE_WAITERS


def take(store: MongoBase, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, waited_ms: int) -> Lease:
    """Take the mutex iff it is free or expired and nobody waits (one findAndModify); else LockHeldError."""
    upsert = store._may_upsert(mutex_id)
    free_or_expired = {"mutexId": mutex_id, "$and": [
        {"$or": [{"taken": {"$ne": True}}, {"$expr": EXPIRED}]},
        {"$or": [{"waiters": {"$exists": False}}, {"$expr": NO_LIVE_WAITERS}]}]}  # (waiters first: see wait_turn)
    with store._errors():
        try:
            doc = store._mutexes.find_one_and_update(
                free_or_expired, take_pipeline(mutex_id, node_id, timeout_ms, holder), upsert=upsert,
                return_document=ReturnDocument.AFTER, projection={"fence": 1, "takenAt": 1, "holder": 1})
        except DuplicateKeyError:
            raise LockHeldError(mutex_id) from None
    if doc is None:  # no upsert (see above), and held
        raise LockHeldError(mutex_id)
    return taken(store, mutex_id, node_id, timeout_ms, holder, waited_ms, doc)


def taken(store: MongoBase, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, waited_ms: int,
          doc: dict[str, Any]) -> Lease:
    """The lease an acquire's returned document says we took; its history event queued."""
    taken_at = parse_iso(doc["takenAt"])
    took = subdocument(subdocument(doc, "holder"), "took")
    previous, previous_fence, late = previous_lease(took, taken_at) if took else (None, None, None)
    store.queue_event(LeaseEvent(mutex_id, "takeover" if took else "acquire", taken_at, node_id, int(doc["fence"]),
                                holder, waited_ms=waited_ms, previous_holder=previous,
                                previous_fence=previous_fence, late_ms=late))
    log.debug("acquired %s as %s (fence %s, %d ms)", mutex_id, node_id, doc["fence"], timeout_ms)
    return Lease(mutex_id, node_id, int(doc["fence"]), timeout_ms, taken_at,
                 taken_at + timedelta(milliseconds=timeout_ms))
