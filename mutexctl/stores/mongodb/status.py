"""What on-call reads on MongoDB: the overview (every mutex, the forced releases, the schema record,
run-once markers and recent history, joined in one aggregate) and the forced-release records."""

from __future__ import annotations

from typing import Any

from ...models import ForcedRelease, Overview
from .base import READ, MongoBase
from .commands import Operation, aggregate, find, operation
from .documents import (
    by_name,
    kept_forced_records,
    lease_event,
    listing_pipeline,
    merge_forced,
    mutex_state,
    once_marker,
    schema_state,
    utc,
)

MAX_MARKERS = 50  # run-once markers status shows, newest first


class MongoStatus(MongoBase):
    @operation
    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Operation[Overview]:
        return overview(mutex_id, forced_limit, recent)

    @operation
    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> Operation[list[ForcedRelease]]:
        return forced_releases(mutex_id, limit)


def overview(mutex_id: str | None, forced_limit: int, recent: int) -> Operation[Overview]:
    """One aggregate: $facet always yields one document (even from an empty collection), to which the
    server's now, the forced-release history and the schema record are joined."""
    match: dict[str, Any] = {"mutexId": {"$type": "string"}} if mutex_id is None else {"mutexId": mutex_id}
    same = {} if mutex_id is None else {"mutexId": mutex_id}
    pipeline: list[dict[str, Any]] = [
        {"$facet": {"mutexes": listing_pipeline(match, READ)}},
        {"$addFields": {"now": "$$NOW"}},
        {"$lookup": {"from": "meta", "as": "meta", "pipeline": [{"$match": {"_id": "schema"}}]}},
    ]
    if forced_limit > 0:  # $limit must be positive
        pipeline.append({"$lookup": {"from": "forced_releases", "as": "forced", "pipeline": [
            {"$match": same}, {"$sort": {"at": -1}}, {"$limit": forced_limit}]}})
    if recent > 0:
        pipeline.append({"$lookup": {"from": "history", "as": "recent", "pipeline": [
            {"$match": same}, {"$sort": {"at": -1}}, {"$limit": recent}]}})
    pipeline.append({"$lookup": {"from": "once", "as": "once", "pipeline": [
        {"$match": same}, {"$sort": {"at": -1}}, {"$limit": MAX_MARKERS}]}})
    [doc] = yield aggregate("mutexes", pipeline)
    now = utc(doc["now"])
    forced = merge_forced(doc.get("forced", []), kept_forced_records(doc["mutexes"]), forced_limit) \
        if forced_limit else ()
    return Overview(tuple(mutex_state(copies, now) for copies in by_name(doc["mutexes"])), forced,
                    schema_state(doc["meta"][0]) if doc["meta"] else None, now,
                    tuple(once_marker(d) for d in doc.get("once", [])),
                    tuple(lease_event(e) for e in doc.get("recent", [])))


def forced_releases(mutex_id: str | None, limit: int) -> Operation[list[ForcedRelease]]:
    query = {} if mutex_id is None else {"mutexId": mutex_id}
    history = yield find("forced_releases", query, sort=[("at", -1)], limit=limit)
    kept = kept_forced_records((yield find("mutexes", {**query, "forced": {"$type": "array"}},
                                           {"mutexId": 1, "forced": 1})))
    return list(merge_forced(history, kept, limit))
