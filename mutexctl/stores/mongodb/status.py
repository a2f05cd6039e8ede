"""What on-call reads on MongoDB: the overview (every mutex, streamed in batches; the forced releases, the
schema record, run-once markers and recent history, joined in one aggregate) and the forced-release
records."""

from __future__ import annotations

from typing import Any

from ...models import ForcedRelease, Overview
from .base import MongoBase
from .commands import Operation, aggregate, find, operation
from .documents import (
    by_name,
    kept_forced_records,
    lease_event,
    merge_forced,
    mutex_state,
    once_marker,
    schema_state,
    utc,
)

MAX_MARKERS = 50  # run-once markers status shows, newest first
PAGE = 1000  # mutex documents per batch of the overview's cursor
READ_TIME_MS = 120_000  # the server's time limit for reading every mutex document


class MongoStatus(MongoBase):
    @operation
    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Operation[Overview]:
        return overview(mutex_id, forced_limit, recent)

    @operation
    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> Operation[list[ForcedRelease]]:
        return forced_releases(mutex_id, limit)


def overview(mutex_id: str | None, forced_limit: int, recent: int) -> Operation[Overview]:
    """The server's now and the small joins first (one aggregate), then the mutex documents (streamed),
    each judged here by the rules the server applies (seed_document: the tests hold the two alike).
    The now is read before the documents, so a lease is never shown as ended before it did."""
    [doc] = yield aggregate("meta", joins_pipeline(mutex_id, forced_limit, recent))
    now = utc(doc["now"])
    docs = yield from mutex_documents(mutex_id)
    forced = merge_forced(doc.get("forced", []), kept_forced_records(docs), forced_limit) if forced_limit else ()
    return Overview(tuple(mutex_state(copies, now, listed=False) for copies in by_name(docs)), forced,
                    schema_state(doc["meta"][0]) if doc["meta"] else None, now,
                    tuple(once_marker(d) for d in doc.get("once", [])),
                    tuple(lease_event(e) for e in doc.get("recent", [])))


def joins_pipeline(mutex_id: str | None, forced_limit: int, recent: int) -> list[dict[str, Any]]:
    """One document, even where nothing exists yet ($facet always yields one): the schema record, the
    server's now, the latest forced releases, history events and run-once markers."""
    same = {} if mutex_id is None else {"mutexId": mutex_id}
    pipeline: list[dict[str, Any]] = [
        {"$facet": {"meta": [{"$match": {"_id": "schema"}}]}},
        {"$addFields": {"now": "$$NOW"}},
    ]
    if forced_limit > 0:  # $limit must be positive
        pipeline.append({"$lookup": {"from": "forced_releases", "as": "forced", "pipeline": [
            {"$match": same}, {"$sort": {"at": -1}}, {"$limit": forced_limit}]}})
    if recent > 0:
        pipeline.append({"$lookup": {"from": "history", "as": "recent", "pipeline": [
            {"$match": same}, {"$sort": {"at": -1}}, {"$limit": recent}]}})
    pipeline.append({"$lookup": {"from": "once", "as": "once", "pipeline": [
        {"$match": same}, {"$sort": {"at": -1}}, {"$limit": MAX_MARKERS}]}})
    return pipeline


def mutex_documents(mutex_id: str | None) -> Operation[list[dict[str, Any]]]:
    """The mutex documents in name order (copies of one name together), streamed from one cursor in
    batches of PAGE: each batch is a short round trip, however big the fleet (one aggregate's single
    reply outlasted the socket's timeout, and would meet the 16 MB document limit). The server's own
    time limit for the whole read, READ_TIME_MS, stops it there (then: the store answered too slowly)."""
    query = {"mutexId": {"$type": "string"} if mutex_id is None else mutex_id}
    return list((yield find("mutexes", query, sort=[("mutexId", 1)], batch_size=PAGE, max_time_ms=READ_TIME_MS)))


def forced_releases(mutex_id: str | None, limit: int) -> Operation[list[ForcedRelease]]:
    query = {} if mutex_id is None else {"mutexId": mutex_id}
    history = yield find("forced_releases", query, sort=[("at", -1)], limit=limit)
    kept = kept_forced_records((yield find("mutexes", {**query, "forced": {"$type": "array"}},
                                           {"mutexId": 1, "forced": 1})))
    return list(merge_forced(history, kept, limit))
