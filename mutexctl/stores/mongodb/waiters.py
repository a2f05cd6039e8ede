"""The waiters' queue on MongoDB: an array ``waiters`` in the mutex's own document, so that a
waiter's poll is one findAndModify that refreshes its entry (taking a ticket the first time) or,
when the lease is free or expired and no live waiter has an older ticket, takes the lease exactly
as an acquire does and leaves the queue. Entries not refreshed for WAITER_STALE_MS are skipped and
dropped by the next write. A plain acquire (the first try, the seed's P) is refused while anyone
live waits (``NO_LIVE_WAITERS`` in its filter). Services that only know the seed's fields ignore
the queue: it orders mutexctl's waiters, and never weakens exclusion."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import Holder, WakeList
from ..common import WAITER_STALE_MS
from ..seed_document import EXPIRED, ISO_NOW
from .documents import FENCE, details_of, int_or_none, literal_expr, live_entries, text_of, utc

_QUEUE = {"$cond": [{"$isArray": "$waiters"}, "$waiters", []]}
_FRESH = {"$subtract": ["$$NOW", WAITER_STALE_MS]}
# (not-conditions are written as comparisons with false, which every wire-compatible server knows)
NO_LIVE_WAITERS: dict[str, Any] = {"$eq": [{"$anyElementTrue": [
    {"$map": {"input": _QUEUE, "as": "w", "in": {"$gt": ["$$w.seen", _FRESH]}}}]}, False]}


def wait_pipeline(mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, token: str,
                  took: dict[str, Any]) -> list[dict[str, Any]]:
    """A waiter's poll (see the module's docstring); ``took`` is take_pipeline's record of a take-over."""
    def either(taken: Any, kept: Any) -> dict[str, Any]:
        return {"$cond": ["$_ok", taken, kept]}

    others = {"$filter": {"input": "$_q", "as": "w", "cond": {"$ne": ["$$w.id", token]}}}
    me = {"id": token, "node": literal_expr(node_id), "host": literal_expr(holder.host), "pid": holder.pid,
          "user": literal_expr(holder.user), "since": {"$ifNull": ["$_me.since", "$$NOW"]}, "seen": "$$NOW",
          "ticket": "$_t"}
    return [
        {"$set": {"_q": {"$filter": {"input": _QUEUE, "as": "w", "cond": {"$gt": ["$$w.seen", _FRESH]}}}}},
        {"$set": {"_me": {"$arrayElemAt": [{"$filter": {"input": "$_q", "as": "w",
                                                        "cond": {"$eq": ["$$w.id", token]}}}, 0]}}},
        {"$set": {"_t": {"$ifNull": ["$_me.ticket", {"$add": [{"$ifNull": [{"$max": "$_q.ticket"}, 0]}, 1]}]},
                  "_free": {"$or": [{"$ne": ["$taken", True]}, EXPIRED]}}},
        {"$set": {"_ok": {"$and": ["$_free", {"$eq": [{"$anyElementTrue": [
            {"$map": {"input": "$_q", "as": "w", "in": {"$lt": ["$$w.ticket", "$_t"]}}}]}, False]}]}}},
        {"$set": {
            "_id": {"$ifNull": ["$_id", literal_expr(mutex_id)]}, "mutexId": literal_expr(mutex_id),
            "taken": either(True, "$taken"), "takenAt": either(ISO_NOW, "$takenAt"),
            "takenBy": either(literal_expr(node_id), "$takenBy"), "timeout": either(timeout_ms, "$timeout"),
            "fence": either({"$add": [FENCE, 1]}, "$fence"),
            "holder": either({"$mergeObjects": [literal_expr(details_of(holder)), {
                "takenAt": ISO_NOW, "takenBy": literal_expr(node_id), "since": "$$NOW", "took": took, "token": token}]},
                "$holder"),
            # (an empty queue is no field at all: an acquire's filter then needs no expression)
            "waiters": either({"$cond": [{"$gt": [{"$size": others}, 0]}, others, "$$REMOVE"]},
                              {"$concatArrays": [others, [me]]}),
            "expiresAt": either("$$REMOVE", "$expiresAt"), "releasedLate": either("$$REMOVE", "$releasedLate"),
            "slots": either("$$REMOVE", "$slots")}},
        {"$unset": ["_q", "_me", "_t", "_free", "_ok"]},
    ]


def leave_pipeline(token: str) -> list[dict[str, Any]]:
    """Our entry out of the queue (and the field gone with the last entry)."""
    rest = {"$filter": {"input": _QUEUE, "as": "w", "cond": {"$ne": ["$$w.id", token]}}}
    return [{"$set": {"waiters": {"$cond": [{"$gt": [{"$size": rest}, 0]}, rest, "$$REMOVE"]}}}]


def live_waiters(doc: dict[str, Any], now: Any) -> WakeList:
    """The live waiters in a released document, in line order (``now``: the server's time of the release)."""
    if not isinstance(now, datetime):
        return ()
    return tuple((text_of(w.get("host")), w["id"]) for w in live_entries(doc, utc(now)) if isinstance(w.get("id"), str))


def my_place(doc: dict[str, Any], token: str) -> tuple[int, datetime | None]:
    """(place in line, the server's time: our entry's ``seen``) from a poll's returned document,
    whose entries are all live (the poll dropped the stale ones)."""
    queue = [w for w in doc.get("waiters") or () if isinstance(w, dict)]
    mine = next((w for w in queue if w.get("id") == token), {})
    ticket, seen = int_or_none(mine.get("ticket")) or 0, mine.get("seen")
    position = 1 + sum(1 for w in queue if (int_or_none(w.get("ticket")) or 0) < ticket)
    return position, utc(seen) if isinstance(seen, datetime) else None
