"""Semaphores and shared holds on MongoDB (see slot_pipelines for the document): take, renew and
release are one findAndModify each; a forced release of some holders records each, as an exclusive
one does."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ...errors import LockHeldError
from ...models import SEMAPHORE, SHARED, Holder, Lease, LeaseEvent, LeaseRequest, MutexState
from ..common import released_late_error, slot_loss_error, token_mode_slot
from .base import MongoBase, copy_forced, forced_at, may_upsert, read_state
from .commands import DuplicateKey, Operation, find_one, find_one_and_update, operation, update_one
from .documents import (
    MAX_OUTBOX,
    holder_of,
    ms_between,
    mutex_state,
    subdocument,
    text_of,
    utc,
)
from .slot_pipelines import VALID, announce_writer, force_slots, forced_filter, slot_filter
from .slot_pipelines import release_slot as release_pipeline
from .slot_pipelines import renew_slot as renew_pipeline
from .slot_pipelines import take_slot as slot_pipeline


class MongoSlots(MongoBase):
    @operation
    def try_acquire_slot(self, request: LeaseRequest, *, waited_ms: int = 0) -> Operation[Lease]:
        return take_slot(self, request, waited_ms, token=uuid.uuid4().hex)

    @operation
    def renew_slot(self, lease: Lease) -> Operation[Lease]:
        return renew_slot(lease)

    @operation
    def release_slot(self, mutex_id: str, node_id: str, fence: int | None, *,
                     reason: str | None = None, user: str | None = None) -> Operation[None]:
        return release_slot(self, mutex_id, node_id, fence, reason, user)

    @operation
    def force_release_slots(self, mutex_id: str, by_node: str, by: Holder, reason: str, *, node: str | None,
                            fence: int | None) -> Operation[MutexState | None]:
        return force_release_slots(self, mutex_id, by_node, by, reason, node=node, fence=fence,
                                              record_id=uuid.uuid4().hex)

    @operation
    def announce_writer(self, mutex_id: str, node_id: str) -> Operation[None]:
        return announce(mutex_id, node_id)

    @operation
    def withdraw_writer(self, mutex_id: str, node_id: str) -> Operation[None]:
        return withdraw(mutex_id, node_id)


def take_slot(store: MongoBase, request: LeaseRequest, waited_ms: int, *, token: str) -> Operation[Lease]:
    """Add this holder (``token`` names it) if there is room, one findAndModify; else LockHeldError."""
    mutex_id, kind, limit = request.mutex_id, request.kind, request.limit
    upsert = yield from may_upsert(store, mutex_id)
    update = slot_pipeline(mutex_id, request.node_id, request.timeout_ms, request.holder, kind=kind, limit=limit,
                           token=token)
    for attempt in (1, 2):
        try:
            doc = yield find_one_and_update("mutexes", {"mutexId": mutex_id}, update, upsert=upsert,
                                            projection={"slots.holders": 1})
            break
        except DuplicateKey:  # a racing first insert of the name: it exists now, try it
            if attempt == 2:
                raise LockHeldError(mutex_id) from None
    mine = [h for h in _holders(doc) if h.get("id") == token]
    if not mine:
        raise LockHeldError(mutex_id)  # full, held exclusively, a writer waits, or held another way
    ends, since = utc(mine[0]["expiresAt"]), utc(mine[0]["since"])
    store.queue_event(LeaseEvent(mutex_id, "acquire", since, request.node_id, int(mine[0]["fence"]), request.holder,
                                 waited_ms=waited_ms, slot=kind))
    return Lease(mutex_id, request.node_id, int(mine[0]["fence"]), request.timeout_ms, since, ends, kind=kind,
                 limit=limit)


def renew_slot(lease: Lease) -> Operation[Lease]:
    doc = yield find_one_and_update("mutexes", slot_filter(lease.mutex_id, lease.node_id, lease.fence, live_only=True),
                                    renew_pipeline(lease.node_id, lease.fence, lease.timeout_ms),
                                    projection={"slots.holders": 1})
    mine = [h for h in _holders(doc) if h.get("fence") == lease.fence and h.get("node") == lease.node_id]
    if not mine:
        state = yield from read_state(lease.mutex_id)
        raise slot_loss_error(lease.mutex_id, lease.node_id, lease.fence, "renew", state)
    return lease._replace(expires_at=utc(mine[0]["expiresAt"]))


def release_slot(store: MongoBase, mutex_id: str, node_id: str, fence: int | None,
                 reason: str | None = None, user: str | None = None) -> Operation[None]:
    if fence is None:  # the seed's V for a slot
        state = yield from read_state(mutex_id)
        fence = token_mode_slot(state, node_id, user) if state is not None else None
        if fence is None:
            raise slot_loss_error(mutex_id, node_id, None, "release", state, user)
    doc = yield find_one_and_update("mutexes", slot_filter(mutex_id, node_id, fence, live_only=False),
                                    release_pipeline(node_id, fence),
                                    projection={"releasedLate": 1, "slots.released": 1, "slots.kind": 1})
    if doc is None:
        raise slot_loss_error(mutex_id, node_id, fence, "release", (yield from read_state(mutex_id)))
    slots = subdocument(doc, "slots")
    gone = subdocument(slots, "released")
    if isinstance(gone.get("at"), datetime):
        store.queue_event(LeaseEvent(mutex_id, "release-late" if doc.get("releasedLate") else "release",
                                     utc(gone["at"]), node_id, fence, holder_of(gone),
                                     held_ms=ms_between(gone.get("since"), gone["at"]),
                                     slot=text_of(slots.get("kind")), reason=reason))
    if doc.get("releasedLate"):
        raise released_late_error(mutex_id, fence)


def force_release_slots(store: MongoBase, mutex_id: str, by_node: str, by: Holder, reason: str, *,
                        node: str | None, fence: int | None, record_id: str) -> Operation[MutexState | None]:
    """Drop the live holders chosen (by node, by fence, or all), each on the record; returns the
    state before, None when none matched."""
    before = yield find_one_and_update(
        "mutexes", forced_filter(mutex_id, node, fence),
        force_slots(record_id, by_node, by, reason, node=node, fence=fence, outbox=MAX_OUTBOX), after=False)
    if before is None:
        return None
    after = yield find_one("mutexes", {"mutexId": mutex_id}, {"forced": 1, "mutexId": 1})
    if after:
        slots = before.get("slots")
        store._queue_forced(after, by, record_id, text_of(slots.get("kind")) if isinstance(slots, dict) else None)
    yield from copy_forced([after] if after else [])
    return mutex_state([before], forced_at(after, record_id) if after else None, listed=False)


def announce(mutex_id: str, node_id: str) -> Operation[None]:
    yield update_one("mutexes", {"mutexId": mutex_id, "taken": True, "slots.kind": {"$in": [SHARED, SEMAPHORE]},
                              "$expr": VALID}, announce_writer(node_id))


def withdraw(mutex_id: str, node_id: str) -> Operation[None]:
    yield update_one("mutexes", {"mutexId": mutex_id, "slots.writerWaiting.node": node_id},
                     {"$set": {"slots.writerWaiting": None}})


def _holders(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    slots = doc.get("slots") if doc else None
    holders = slots.get("holders") if isinstance(slots, dict) else None
    return [h for h in holders if isinstance(h, dict)] if isinstance(holders, list) else []
