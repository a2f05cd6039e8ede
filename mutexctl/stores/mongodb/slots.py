"""Semaphores and shared holds on MongoDB (see slot_pipelines for the document): take, renew and
release are one findAndModify each; a forced release of some holders records each, as an exclusive
one does."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import LockHeldError
from ...models import SHARED, Holder, Lease, LeaseEvent, LeaseRequest, MutexState
from ..common import released_late_error, slot_loss_error, token_mode_slot
from .base import MongoBase
from .documents import (
    MAX_OUTBOX,
    holder_of,
    ms_between,
    mutex_state,
    subdocument,
    text_of,
    utc,
)
from .slot_pipelines import (
    VALID,
    announce_writer,
    force_slots,
    forced_filter,
    release_slot,
    renew_slot,
    slot_filter,
    take_slot,
)


class MongoSlots(MongoBase):
    def try_acquire_slot(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
        kind, limit = request.kind, request.limit
        upsert = self._may_upsert(mutex_id)
        token = uuid.uuid4().hex
        update = take_slot(mutex_id, node_id, timeout_ms, holder, kind=kind, limit=limit, token=token)
        with self._errors():
            for attempt in (1, 2):
                try:
                    doc = self._mutexes.find_one_and_update({"mutexId": mutex_id}, update, upsert=upsert,
                                                            return_document=ReturnDocument.AFTER,
                                                            projection={"slots.holders": 1})
                    break
                except DuplicateKeyError:  # a racing first insert of the name: it exists now, try it
                    if attempt == 2:
                        raise LockHeldError(mutex_id) from None
        mine = [h for h in _holders(doc) if h.get("id") == token]
        if not mine:
            raise LockHeldError(mutex_id)  # full, held exclusively, a writer waits, or held another way
        ends, since = utc(mine[0]["expiresAt"]), utc(mine[0]["since"])
        self.queue_event(LeaseEvent(mutex_id, "acquire", since, node_id, int(mine[0]["fence"]), holder,
                                    waited_ms=waited_ms, slot=kind))
        return Lease(mutex_id, node_id, int(mine[0]["fence"]), timeout_ms, since, ends, kind=kind, limit=limit)

    def renew_slot(self, lease: Lease) -> Lease:
        with self._errors():
            doc = self._mutexes.find_one_and_update(
                slot_filter(lease.mutex_id, lease.node_id, lease.fence, live_only=True),
                renew_slot(lease.node_id, lease.fence, lease.timeout_ms), return_document=ReturnDocument.AFTER,
                projection={"slots.holders": 1})
        mine = [h for h in _holders(doc) if h.get("fence") == lease.fence and h.get("node") == lease.node_id]
        if not mine:
            raise slot_loss_error(lease.mutex_id, lease.node_id, lease.fence, "renew", self.get(lease.mutex_id))
        return lease._replace(expires_at=utc(mine[0]["expiresAt"]))

    def release_slot(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        if fence is None:  # the seed's V for a slot
            state = self.get(mutex_id)
            fence = token_mode_slot(state, node_id) if state is not None else None
            if fence is None:
                raise slot_loss_error(mutex_id, node_id, None, "release", state)
        with self._errors():
            doc = self._mutexes.find_one_and_update(slot_filter(mutex_id, node_id, fence, live_only=False),
                                                    release_slot(node_id, fence),
                                                    return_document=ReturnDocument.AFTER,
                                                    projection={"releasedLate": 1, "slots.released": 1,
                                                                "slots.kind": 1})
        if doc is None:
            raise slot_loss_error(mutex_id, node_id, fence, "release", self.get(mutex_id))
        slots = subdocument(doc, "slots")
        gone = subdocument(slots, "released")
        if isinstance(gone.get("at"), datetime):
            self.queue_event(LeaseEvent(mutex_id, "release-late" if doc.get("releasedLate") else "release",
                                        utc(gone["at"]), node_id, fence, holder_of(gone),
                                        held_ms=ms_between(gone.get("since"), gone["at"]),
                                        slot=text_of(slots.get("kind"))))
        if doc.get("releasedLate"):
            raise released_late_error(mutex_id, fence)

    def force_release_slots(self, mutex_id: str, by_node: str, by: Holder, reason: str, *, node: str | None,
                            fence: int | None) -> MutexState | None:
        """Drop the live holders chosen (by node, by fence, or all), each on the record; returns the
        state before, None when none matched."""
        record_id = uuid.uuid4().hex
        with self._errors():
            before = self._mutexes.find_one_and_update(
                forced_filter(mutex_id, node, fence),
                force_slots(record_id, by_node, by, reason, node=node, fence=fence, outbox=MAX_OUTBOX),
                return_document=ReturnDocument.BEFORE)
            if before is None:
                return None
            after = self._mutexes.find_one({"mutexId": mutex_id}, {"forced": 1, "mutexId": 1})
        if after:
            slots = before.get("slots")
            self._queue_forced(after, by, record_id, text_of(slots.get("kind")) if isinstance(slots, dict) else None)
        self._copy_forced([after] if after else [])
        return mutex_state([before], None, listed=False)

    def announce_writer(self, mutex_id: str, node_id: str) -> None:
        with self._errors():
            self._mutexes.update_one({"mutexId": mutex_id, "taken": True, "slots.kind": SHARED, "$expr": VALID},
                                     announce_writer(node_id))


def _holders(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    slots = doc.get("slots") if doc else None
    holders = slots.get("holders") if isinstance(slots, dict) else None
    return [h for h in holders if isinstance(h, dict)] if isinstance(holders, list) else []
