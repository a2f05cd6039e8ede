"""Leases on MongoDB: each operation one command, expiry on the server's clock (see seed_document)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from ...errors import DuplicateMutexError, LockHeldError, NotOwnerError
from ...models import (
    ForcedRelease,
    Holder,
    Lease,
    LeaseEvent,
    MutexState,
    Overview,
    SchemaState,
    Turn,
    WakeList,
    parse_iso,
)
from ..common import loss_error, newer_store_error, released_late_error, waiting_turn
from ..seed_document import (
    EXPIRED,
    EXPIRED_OWN,
    EXPIRY,
    HOLDER_CURRENT,
    ISO_NOW,
    LIVE,
    TAKEN_AT,
    TIMEOUT,
    holder_is_current,
)
from ..steps import SCHEMA_VERSION, UNIQUE_IDS_STEP
from .base import MongoBase, log
from .documents import (
    TOOK,
    by_name,
    force_pipeline,
    has_unique_ids,
    history_entry,
    holder_of,
    int_or_none,
    kept_forced_records,
    lease_event,
    listing_pipeline,
    merge_forced,
    ms_between,
    mutex_state,
    once_marker,
    previous_lease,
    schema_state,
    subdocument,
    take_pipeline,
    text_of,
    utc,
)
from .queue import NO_LIVE_WAITERS, leave_pipeline, live_waiters, my_place, wait_pipeline

UNIQUE_INDEX = "mutexId_unique"
MAX_MARKERS = 50  # run-once markers status shows, newest first
_READ = {"_now": "$$NOW", "_takenAt": TAKEN_AT, "_timeout": TIMEOUT, "_expires": EXPIRY}


class MongoLeases(MongoBase):
    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *,
                    waited_ms: int = 0) -> Lease:
        upsert = True
        if not self._unique_ids:
            # Without the unique index an upsert beside another service's document (ObjectId _id)
            # would make a second copy of the mutex: look first, and never upsert beside one.
            with self._errors():
                copies = self._mutexes.count_documents({"mutexId": mutex_id}, limit=2)
            if copies > 1:
                raise DuplicateMutexError(mutex_id, self.get(mutex_id))
            upsert = copies == 0
        free_or_expired = {"mutexId": mutex_id, "$and": [
            {"$or": [{"taken": {"$ne": True}}, {"$expr": EXPIRED}]},
            {"$or": [{"waiters": {"$exists": False}}, {"$expr": NO_LIVE_WAITERS}]}]}  # (waiters first: see wait_turn)
        with self._errors():
            try:
                doc = self._mutexes.find_one_and_update(
                    free_or_expired, take_pipeline(mutex_id, node_id, timeout_ms, holder), upsert=upsert,
                    return_document=ReturnDocument.AFTER, projection={"fence": 1, "takenAt": 1, "holder": 1})
            except DuplicateKeyError:
                raise LockHeldError(mutex_id) from None
        if doc is None:  # no upsert (see above), and held
            raise LockHeldError(mutex_id)
        return self._taken(mutex_id, node_id, timeout_ms, holder, waited_ms, doc)

    def _taken(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, waited_ms: int,
               doc: dict[str, Any]) -> Lease:
        """The lease an acquire's returned document says we took; its history event queued."""
        taken_at = parse_iso(doc["takenAt"])
        took = subdocument(subdocument(doc, "holder"), "took")
        previous, previous_fence, late = previous_lease(took, taken_at) if took else (None, None, None)
        self.queue_event(LeaseEvent(mutex_id, "takeover" if took else "acquire", taken_at, node_id, int(doc["fence"]),
                                    holder, waited_ms=waited_ms, previous_holder=previous,
                                    previous_fence=previous_fence, late_ms=late))
        log.debug("acquired %s as %s (fence %s, %d ms)", mutex_id, node_id, doc["fence"], timeout_ms)
        return Lease(mutex_id, node_id, int(doc["fence"]), timeout_ms, taken_at,
                     taken_at + timedelta(milliseconds=timeout_ms))

    def wait_turn(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *, token: str,
                  waited_ms: int) -> Turn:
        update = wait_pipeline(mutex_id, node_id, timeout_ms, holder, token, TOOK)
        with self._errors():
            for attempt in (1, 2):
                try:
                    doc = self._mutexes.find_one_and_update({"mutexId": mutex_id}, update, upsert=self._unique_ids,
                                                            return_document=ReturnDocument.AFTER)
                    break
                except DuplicateKeyError:  # a racing first insert of the name: it exists now, try it
                    if attempt == 2:
                        raise LockHeldError(mutex_id) from None
        if doc is None:  # no document, and no unique index to upsert safely beside another service's copy
            return Turn(self.try_acquire(mutex_id, node_id, timeout_ms, holder, waited_ms=waited_ms))
        if subdocument(doc, "holder").get("token") == token and doc.get("takenBy") == node_id:
            return Turn(self._taken(mutex_id, node_id, timeout_ms, holder, waited_ms, doc))
        place, now = my_place(doc, token)
        return waiting_turn(place, mutex_state([doc], now, listed=False))

    def leave_queue(self, mutex_id: str, token: str) -> None:
        with self._errors():
            self._mutexes.update_one({"mutexId": mutex_id, "waiters.id": token}, leave_pipeline(token))

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

    def _queue_forced(self, after: dict[str, Any], by: Holder, record_id: str, slot: str | None) -> None:
        """The lease history's events of a forced release, from its records in the document (a
        semaphore's: one per holder, ids ``record_id-fence``)."""
        for record in after.get("forced") or ():
            if isinstance(record, dict) and str(record.get("id", "")).split("-")[0] == record_id:
                self.queue_event(LeaseEvent(
                    str(after.get("mutexId")), "forced", utc(record["at"]), text_of(record.get("byNode")), None, by,
                    held_ms=int_or_none(record.get("heldMs")), previous_holder=text_of(record.get("previousHolder")),
                    previous_fence=int_or_none(record.get("previousFence")), reason=text_of(record.get("reason")),
                    slot=slot))

    def get(self, mutex_id: str) -> MutexState | None:
        """One aggregate: the mutex's documents (one, unless another service made copies), the
        server's now and the lease's expiry on that clock."""
        with self._errors():
            docs = list(self._mutexes.aggregate(listing_pipeline({"mutexId": mutex_id}, _READ)))
        return mutex_state(docs, docs[0]["_now"]) if docs else None

    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Overview:
        """One aggregate: $facet always yields one document (even from an empty collection), to which
        the server's now, the forced-release history and the schema record are joined."""
        match: dict[str, Any] = {"mutexId": {"$type": "string"}} if mutex_id is None else {"mutexId": mutex_id}
        pipeline: list[dict[str, Any]] = [
            {"$facet": {"mutexes": listing_pipeline(match, _READ)}},
            {"$addFields": {"now": "$$NOW"}},
            {"$lookup": {"from": self._meta.name, "as": "meta", "pipeline": [{"$match": {"_id": "schema"}}]}},
        ]
        if forced_limit > 0:  # $limit must be positive
            pipeline.append({"$lookup": {"from": self._forced.name, "as": "forced", "pipeline": [
                {"$match": {} if mutex_id is None else {"mutexId": mutex_id}},
                {"$sort": {"at": -1}}, {"$limit": forced_limit}]}})
        if recent > 0:
            pipeline.append({"$lookup": {"from": self._history.name, "as": "recent", "pipeline": [
                {"$match": {} if mutex_id is None else {"mutexId": mutex_id}}, {"$sort": {"at": -1}},
                {"$limit": recent}]}})
        pipeline.append({"$lookup": {"from": self._once.name, "as": "once", "pipeline": [
            {"$match": {} if mutex_id is None else {"mutexId": mutex_id}}, {"$sort": {"at": -1}},
            {"$limit": MAX_MARKERS}]}})
        with self._errors():
            [doc] = self._mutexes.aggregate(pipeline)
        now = utc(doc["now"])
        forced = merge_forced(doc.get("forced", []), kept_forced_records(doc["mutexes"]), forced_limit) \
            if forced_limit else ()
        return Overview(tuple(mutex_state(copies, now) for copies in by_name(doc["mutexes"])), forced,
                        schema_state(doc["meta"][0]) if doc["meta"] else None, now,
                        tuple(once_marker(d) for d in doc.get("once", [])),
                        tuple(lease_event(e) for e in doc.get("recent", [])))

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        query = {} if mutex_id is None else {"mutexId": mutex_id}
        with self._errors():
            history = list(self._forced.find(query).sort("at", -1).limit(limit))
            kept = kept_forced_records(list(self._mutexes.find({**query, "forced": {"$type": "array"}},
                                                  {"mutexId": 1, "forced": 1})))
        return list(merge_forced(history, kept, limit))

    def prepare_writes(self) -> SchemaState | None:
        """Before the first write: refuse a store newer than this tool, and make sure ``mutexId`` is
        unique, which makes acquire atomic (once per store object; later calls answer from memory).

        A store that init-schema brought to UNIQUE_IDS_STEP has the index. On an older one it is
        created here (as SQLite creates its tables on first use); where it cannot be (documents
        already share a name, or the user may not create indexes) acquire looks before it writes.
        """
        if self._prepared is not None:
            return self._prepared[0]
        with self._errors():
            doc = self._meta.find_one({"_id": "schema"})
        state = None if doc is None else schema_state(doc)
        if state is not None and state.version > SCHEMA_VERSION:
            raise newer_store_error(state.version)
        if state is not None and state.version >= UNIQUE_IDS_STEP:
            self._unique_ids = True
        else:
            with self._errors():
                try:
                    self._unique_ids = self._ensure_unique_ids()
                except (DuplicateKeyError, OperationFailure) as exc:  # copies exist, or not allowed to
                    log.debug("no unique index on mutexId: %s", self._scrub(str(exc)))
                    self._unique_ids = False
        self._prepared = (state,)
        return state

    # -- helpers --------------------------------------------------------------------------------

    def _ours(self, mutex_id: str, node_id: str, fence: int | None, *also: dict[str, Any]) -> dict[str, Any]:
        """Our lease: taken by ``node_id`` and, given a fence, that very lease — its holder stamp
        still current, so another service's take-over under the same node id is not ours. Without a
        fence (a plain release, the seed's V), only a lease no running ``acquire -- CMD`` supervises."""
        guard: dict[str, Any] = {"mutexId": mutex_id, "taken": True, "takenBy": node_id}
        checks = list(also)
        if fence is not None:
            guard["fence"] = fence
            checks.append(HOLDER_CURRENT)
        else:
            guard["holder.exec"] = {"$ne": True}
        if checks:
            guard["$expr"] = {"$and": checks}
        return guard

    def _ensure_unique_ids(self) -> bool:
        """Create the unique index on ``mutexId`` unless an equivalent one exists; raises
        DuplicateKeyError when documents already share a name."""
        if has_unique_ids(self._mutexes.index_information()):
            return True
        self._mutexes.create_index("mutexId", unique=True, name=UNIQUE_INDEX)
        return True

    def _copy_forced(self, docs: list[dict[str, Any]]) -> None:
        for mutex_id, record in kept_forced_records(docs):
            with self._errors():
                try:
                    self._forced.insert_one(history_entry(mutex_id, record))
                except DuplicateKeyError:
                    pass  # copied before

    def _loss(self, mutex_id: str, node_id: str, fence: int | None, verb: str) -> NotOwnerError:
        return loss_error(mutex_id, node_id, fence, verb, self.get(mutex_id))  # a read on the failure path only

