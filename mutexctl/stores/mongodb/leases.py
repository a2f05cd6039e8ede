"""Exclusive leases on MongoDB: take, renew, release and break one, each one command (a forced
release: one write, then its records copied), expiry on the server's clock (see seed_document)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pymongo import ReturnDocument

from ...errors import DuplicateMutexError
from ...models import Holder, Lease, LeaseEvent, LeaseRequest, MutexState, WakeList, parse_iso
from ..common import released_late_error
from ..seed_document import EXPIRED, EXPIRED_OWN, ISO_NOW, LIVE, holder_is_current
from .base import MongoBase
from .documents import force_pipeline, holder_of, int_or_none, ms_between, mutex_state, subdocument, utc
from .exclusive import take
from .waiters import live_waiters


class MongoLeases(MongoBase):
    def try_acquire(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        return take(self, request.mutex_id, request.node_id, request.timeout_ms, request.holder, waited_ms)

    def renew(self, lease: Lease) -> Lease:
        """Rewrite ``takenAt`` (and the holder's stamp) to the server's now: every reader of the seed's
        fields then sees the lease extended by its timeout."""
        ours_and_live = self._ours(lease.mutex_id, lease.node_id, lease.fence, LIVE)
        extend = [{"$set": {"takenAt": ISO_NOW, "timeout": lease.timeout_ms, "holder.takenAt": ISO_NOW}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(ours_and_live, extend, return_document=ReturnDocument.AFTER,
                                                    projection={"takenAt": 1})
        if doc is None:
            raise self._loss(lease.mutex_id, lease.node_id, lease.fence, "renew")
        expires = parse_iso(doc["takenAt"]) + timedelta(milliseconds=lease.timeout_ms)
        return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                     lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> WakeList:
        # One write: free it, and tell in the same operation whether it had already expired (kept in
        # releasedLate until the next acquire). With a fence the guard proves the lease is the one we
        # wrote, whose takenAt is in the seed's form: the smaller test suffices.
        free = [{"$set": {"taken": False, "releasedLate": EXPIRED if fence is None else EXPIRED_OWN,
                          "holder.releasedAt": "$$NOW"}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(self._ours(mutex_id, node_id, fence), free,
                                                    return_document=ReturnDocument.AFTER,
                                                    projection={"releasedLate": 1, "fence": 1, "holder": 1,
                                                                "takenAt": 1, "takenBy": 1, "waiters": 1})
        if doc is None:
            raise self._loss(mutex_id, node_id, fence, "release")
        mine = subdocument(doc, "holder")
        current, at = holder_is_current(doc), mine.get("releasedAt")
        if isinstance(at, datetime):
            self.queue_event(LeaseEvent(
                mutex_id, "release-late" if doc.get("releasedLate") else "release", utc(at), node_id,
                int_or_none(doc.get("fence")), holder_of(mine) if current else None,
                held_ms=ms_between(mine.get("since"), at) if current else None))
        if doc.get("releasedLate"):
            raise released_late_error(mutex_id, doc.get("fence"))
        return live_waiters(doc, at)

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        """One write frees the mutex and keeps the record in its document; the copy into the history
        collection follows, idempotent: if this process dies in between, readers still find the
        record in the document (see merge_forced) and the next forced release copies it."""
        if not self._unique_ids:
            with self._errors():
                if self._mutexes.count_documents({"mutexId": mutex_id}, limit=2) > 1:
                    raise DuplicateMutexError(mutex_id, self.get(mutex_id), verb="release")
        with self._errors():
            record_id = uuid.uuid4().hex
            after = self._mutexes.find_one_and_update({"mutexId": mutex_id, "taken": True},
                                                      force_pipeline(record_id, by_node, by, reason),
                                                      return_document=ReturnDocument.AFTER)
        if after is None:
            return None
        self._queue_forced(after, by, record_id, None)
        self._copy_forced([after])
        return mutex_state([{**after, "taken": True}], None, listed=False)
