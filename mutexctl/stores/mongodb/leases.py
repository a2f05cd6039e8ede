"""Exclusive leases on MongoDB: take, renew, release and break one, each one command (a forced
release: one write, then its records copied), expiry on the server's clock (see seed_document)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from ...models import Holder, Lease, LeaseEvent, LeaseRequest, MutexState, WakeList, parse_iso
from ..common import released_late_error
from ..seed_document import EXPIRED, EXPIRED_OWN, ISO_NOW, LIVE, holder_is_current
from .base import MongoBase, copy_forced, forced_at, loss, may_upsert
from .commands import Operation, find_one_and_update, operation
from .documents import force_pipeline, holder_of, int_or_none, ms_between, mutex_state, subdocument, utc
from .exclusive import take
from .waiters import live_waiters


class MongoLeases(MongoBase):
    @operation
    def try_acquire(self, request: LeaseRequest, *, waited_ms: int = 0) -> Operation[Lease]:
        return take(self, request, waited_ms)

    @operation
    def renew(self, lease: Lease) -> Operation[Lease]:
        return renew(self, lease)

    @operation
    def release(self, mutex_id: str, node_id: str, fence: int | None, *,
                reason: str | None = None, user: str | None = None) -> Operation[WakeList]:
        return release(self, mutex_id, node_id, fence, reason, user)

    @operation
    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> Operation[MutexState | None]:
        return force_release(self, mutex_id, by_node, by, reason, record_id=uuid.uuid4().hex)


def renew(store: MongoBase, lease: Lease) -> Operation[Lease]:
    """Rewrite ``takenAt`` (and the holder's stamp) to the server's now: every reader of the seed's
    fields then sees the lease extended by its timeout."""
    ours_and_live = store._ours(lease.mutex_id, lease.node_id, lease.fence, LIVE)
    extend = [{"$set": {"takenAt": ISO_NOW, "timeout": lease.timeout_ms, "holder.takenAt": ISO_NOW}}]
    doc = yield find_one_and_update("mutexes", ours_and_live, extend, projection={"takenAt": 1})
    if doc is None:
        raise (yield from loss(lease.mutex_id, lease.node_id, lease.fence, "renew"))
    expires = parse_iso(doc["takenAt"]) + timedelta(milliseconds=lease.timeout_ms)
    return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                 lease.local_deadline)


def release(store: MongoBase, mutex_id: str, node_id: str, fence: int | None,
            reason: str | None = None, user: str | None = None) -> Operation[WakeList]:
    """One write: free it, and tell in the same operation whether it had already expired (kept in
    releasedLate until the next acquire). With a fence the guard proves the lease is the one we
    wrote, whose takenAt is in the seed's form: the smaller test suffices."""
    free = [{"$set": {"taken": False, "releasedLate": EXPIRED if fence is None else EXPIRED_OWN,
                      "holder.releasedAt": "$$NOW"}}]
    doc = yield find_one_and_update("mutexes", store._ours(mutex_id, node_id, fence, user=user), free,
                                    projection={"releasedLate": 1, "fence": 1, "holder": 1, "takenAt": 1,
                                                "takenBy": 1, "waiters": 1})
    if doc is None:
        raise (yield from loss(mutex_id, node_id, fence, "release", user))
    mine = subdocument(doc, "holder")
    current, at = holder_is_current(doc), mine.get("releasedAt")
    if isinstance(at, datetime):
        store.queue_event(LeaseEvent(
            mutex_id, "release-late" if doc.get("releasedLate") else "release", utc(at), node_id,
            int_or_none(doc.get("fence")), holder_of(mine) if current else None,
            held_ms=ms_between(mine.get("since"), at) if current else None, reason=reason))
    if doc.get("releasedLate"):
        raise released_late_error(mutex_id, doc.get("fence"))
    return live_waiters(doc, at)


def force_release(store: MongoBase, mutex_id: str, by_node: str, by: Holder, reason: str, *,
                  record_id: str) -> Operation[MutexState | None]:
    """One write frees the mutex and keeps the record in its document; the copy into the history
    collection follows, idempotent: if this process dies in between, readers still find the record in
    the document (see merge_forced) and the next forced release copies it."""
    yield from may_upsert(store, mutex_id, verb="release")  # (refuses copies of the name)
    after = yield find_one_and_update("mutexes", {"mutexId": mutex_id, "taken": True},
                                      force_pipeline(record_id, by_node, by, reason))
    if after is None:
        return None
    store._queue_forced(after, by, record_id, None)
    yield from copy_forced([after])
    return mutex_state([{**after, "taken": True}], forced_at(after, record_id), listed=False)
