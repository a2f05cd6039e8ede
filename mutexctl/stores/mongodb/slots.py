"""Semaphores and shared holds on MongoDB (see slot_pipelines for the document), and run-once
markers: take, renew and release are one findAndModify each; a forced release of some holders
records each, as an exclusive one does."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import DuplicateMutexError, LockHeldError, NotOwnerError
from ...models import EXCLUSIVE, SHARED, Holder, Lease, LeaseEvent, MutexState, OnceMarker, WakeList
from ..common import released_late_error, slot_loss_error
from .documents import (
    MAX_OUTBOX,
    holder_of,
    lease_event,
    literal_expr,
    ms_between,
    mutex_state,
    once_marker,
    subdocument,
    text_of,
    utc,
)
from .leases import MongoLeases
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


class MongoSlots(MongoLeases):
    def try_acquire_slot(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *,
                         kind: str, limit: int | None, waited_ms: int = 0) -> Lease:
        upsert = True
        if not self._unique_ids:  # (see MongoLeases.try_acquire)
            with self._errors():
                copies = self._mutexes.count_documents({"mutexId": mutex_id}, limit=2)
            if copies > 1:
                raise DuplicateMutexError(mutex_id, self.get(mutex_id))
            upsert = copies == 0
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

    def renew(self, lease: Lease) -> Lease:
        if lease.kind == "exclusive":
            return super().renew(lease)
        with self._errors():
            doc = self._mutexes.find_one_and_update(
                slot_filter(lease.mutex_id, lease.node_id, lease.fence, live_only=True),
                renew_slot(lease.node_id, lease.fence, lease.timeout_ms), return_document=ReturnDocument.AFTER,
                projection={"slots.holders": 1})
        mine = [h for h in _holders(doc) if h.get("fence") == lease.fence and h.get("node") == lease.node_id]
        if not mine:
            raise slot_loss_error(lease.mutex_id, lease.node_id, lease.fence, "renew", self.get(lease.mutex_id))
        return lease._replace(expires_at=utc(mine[0]["expiresAt"]))

    def release(self, mutex_id: str, node_id: str, fence: int | None, *, slot: bool | None = None) -> WakeList:
        """``slot``: the lease is a slot (True), exclusive (False), or not known (None: the exclusive
        release is tried first, and a slot's only when that finds slots)."""
        if slot is not True:
            try:
                return super().release(mutex_id, node_id, fence)
            except NotOwnerError as error:  # with the state read after it: slots to try?
                if slot is False or not isinstance(error.state, MutexState) or error.state.kind == EXCLUSIVE:
                    raise
        self._release_slot(mutex_id, node_id, fence)
        return ()

    def _release_slot(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        if fence is None:  # the seed's V for a slot: this node's one token-mode slot
            state = self.get(mutex_id)
            mine = [s for s in state.slots if s.node == node_id and not (s.holder and s.holder.exec_mode)] \
                if state is not None else []
            if len(mine) != 1:
                raise slot_loss_error(mutex_id, node_id, None, "release", state)
            fence = mine[0].fence
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

    # -- history ------------------------------------------------------------------------------------

    def record_event(self, event: LeaseEvent) -> None:
        """An event noticed outside a store operation (a keeper's loss, a refused release): one
        write to the history collection, stamped with the server's clock."""
        holder = event.holder
        fields = {"mutexId": event.mutex_id, "kind": event.kind, "node": event.node, "fence": event.fence,
                  "holder": None if holder is None else {"host": holder.host, "pid": holder.pid, "user": holder.user,
                                                         "command": holder.command},
                  "reason": event.reason, "slot": event.slot, "heldMs": event.held_ms}
        with self._errors():
            self._history.find_one_and_update({"_id": uuid.uuid4().hex, "at": {"$exists": False}},
                                              [{"$set": {**{k: literal_expr(v) for k, v in fields.items()},
                                                         "at": "$$NOW"}}],
                                              upsert=True)

    def history(self, mutex_ids: list[str] | None, *, since_s: float | None = None, node: str | None = None,
                limit: int = 100) -> list[LeaseEvent]:
        """The events of ``mutex_ids`` (None: all), newest first; this process's own still queued
        are written first."""
        self.flush_events()
        found: dict[str, Any] = {} if mutex_ids is None else {"mutexId": {"$in": mutex_ids}}
        if since_s is not None:
            found["$expr"] = {"$gte": ["$at", {"$subtract": ["$$NOW", round(since_s * 1000)]}]}
        if node is not None:
            found["$or"] = [{"node": node}, {"previousHolder": node}]
        with self._errors():
            rows = list(self._history.find(found).sort([("at", -1), ("_id", -1)]).limit(limit))
        return [lease_event(r) for r in rows]

    # -- run-once markers ---------------------------------------------------------------------------

    def once_marker(self, mutex_id: str, key: str) -> OnceMarker | None:
        with self._errors():
            doc = self._once.find_one({"_id": _once_id(mutex_id, key)})
        return once_marker(doc) if doc else None

    def mark_once(self, mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> OnceMarker:
        """Record (mutex, key) done, stamped with the server's clock; the first record stands."""
        fields = {"mutexId": mutex_id, "key": key, "byNode": node_id, "fence": fence, "host": holder.host,
                  "pid": holder.pid, "user": holder.user, "command": holder.command}
        with self._errors():
            try:
                doc = self._once.find_one_and_update(
                    {"_id": _once_id(mutex_id, key), "at": {"$exists": False}},
                    [{"$set": {**{k: literal_expr(v) for k, v in fields.items()}, "at": "$$NOW"}}], upsert=True,
                    return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:
                doc = self._once.find_one({"_id": _once_id(mutex_id, key)})
        assert doc is not None  # upserted, or there already
        return once_marker(doc)

    def clear_once(self, mutex_id: str, key: str, by_node: str, by: Holder, reason: str) -> OnceMarker | None:
        """Remove the marker, on the record (the history of forced releases): the record is written
        first, so a clear that dies midway leaves the marker and its record, never a silent removal."""
        marker = self.once_marker(mutex_id, key)
        if marker is None:
            return None
        record = {"mutexId": mutex_id, "byNode": by_node, "byUser": by.user, "byHost": by.host,
                  "reason": f"[once {key}] {reason}", "previousHolder": marker.by_node, "previousFence": marker.fence}
        with self._errors():
            self._forced.find_one_and_update({"_id": uuid.uuid4().hex, "at": {"$exists": False}},
                                             [{"$set": {**{k: literal_expr(v) for k, v in record.items()},
                                                        "at": "$$NOW"}}],
                                             upsert=True)
            self._once.delete_one({"_id": _once_id(mutex_id, key)})
        return marker

    def once_markers(self, mutex_id: str | None, limit: int = 50) -> list[OnceMarker]:
        with self._errors():
            docs = list(self._once.find({} if mutex_id is None else {"mutexId": mutex_id}).sort("at", -1).limit(limit))
        return [once_marker(d) for d in docs]


def _once_id(mutex_id: str, key: str) -> dict[str, str]:
    return {"mutexId": mutex_id, "key": key}  # (field order is part of the _id's value: always this one)


def _holders(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    slots = doc.get("slots") if doc else None
    holders = slots.get("holders") if isinstance(slots, dict) else None
    return [h for h in holders if isinstance(h, dict)] if isinstance(holders, list) else []
