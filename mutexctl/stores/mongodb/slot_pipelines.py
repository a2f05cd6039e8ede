"""The update pipelines of semaphores and shared holds: several holders in one mutex document.

The document keeps the seed's fields true for readers that know nothing else: while any slot is
held, ``taken`` is true, ``takenBy`` is ``mutexctl:semaphore`` (or ``mutexctl:shared``) and
``takenAt + timeout`` is the latest slot's expiry, so a seed-only ``P`` sees the mutex held until the
last slot ends. The holders sit in ``slots: {takenAt, takenBy, kind, limit, holders: [{id, node,
fence, expiresAt, timeout, since, host, pid, user, command, exec}], writerWaiting: {node, until}}``,
stamped like ``holder`` with the ``takenAt``/``takenBy`` they belong to: a foreign write (another
service's ``P`` after the last slot ended, a naive ``V``) makes them void. Every time is ``$$NOW``.
"""

from __future__ import annotations

from typing import Any

from ...models import SEMAPHORE, Holder
from ..common import slot_owner
from ..seed_document import EXPIRED, ISO_NOW
from .documents import FENCE, details_of, literal_expr
from .waiters import NO_LIVE_WAITERS

ANNOUNCE_MS = 3000  # a waiting writer's announcement holds off new shared holds this long unless renewed

def _not(condition: Any) -> dict[str, Any]:
    """Not ``condition`` (a boolean): written as a comparison, which every wire-compatible server knows."""
    return {"$eq": [condition, False]}


# The holders are current: the seed's fields are still the ones mutexctl wrote with them.
VALID: dict[str, Any] = {"$and": [{"$eq": ["$taken", True]}, {"$eq": [{"$type": "$slots.takenAt"}, "string"]},
                                  {"$eq": ["$slots.takenAt", "$takenAt"]}, {"$eq": ["$slots.takenBy", "$takenBy"]}]}
# Held by an exclusive lease (mutexctl's or another service's) that has not ended.
EXCLUSIVE_LIVE: dict[str, Any] = {"$and": [{"$eq": ["$taken", True]}, _not(VALID), _not(EXPIRED)]}
WRITER_WAITING: dict[str, Any] = {"$and": [VALID, {"$eq": [{"$type": "$slots.writerWaiting.until"}, "date"]},
                                           {"$gt": ["$slots.writerWaiting.until", "$$NOW"]}]}


def live(holders: str, var: str = "h") -> dict[str, Any]:
    """The holders in the array at ``holders`` whose slot has not ended."""
    return {"$filter": {"input": {"$cond": [{"$isArray": holders}, holders, []]}, "as": var,
                        "cond": {"$gt": [f"$${var}.expiresAt", "$$NOW"]}}}


def _ours(var: str, node: str, fence: int) -> dict[str, Any]:
    return {"$and": [{"$eq": [f"$${var}.fence", fence]}, {"$eq": [f"$${var}.node", literal_expr(node)]}]}


def latest(dates: str) -> dict[str, Any]:
    """The latest of an array of dates, by ``$reduce`` and ``$gt``: every server reads it alike (a
    wire-compatible one answered null for ``$max`` over dates, and the mutex stayed held for ever)."""
    return {"$reduce": {"input": {"$ifNull": [dates, []]}, "initialValue": None,
                        "in": {"$cond": [{"$or": [{"$eq": ["$$value", None]}, {"$gt": ["$$this", "$$value"]}]},
                                         "$$this", "$$value"]}}}


def time_left(dates: str) -> dict[str, Any]:
    """Milliseconds from now to the latest of ``dates``, as the integer type an exclusive lease's
    ``timeout`` has: an int32 when it fits (a long only past 24.8 days), so a seed reader reads both alike."""
    left = {"$subtract": [latest(dates), "$$NOW"]}
    return {"$convert": {"input": left, "to": "int", "onError": left, "onNull": None}}


def _seed_fields(holders: str, *, when: Any = True) -> dict[str, Any]:
    """The seed's view of the slots in ``holders``: taken until the latest one ends (when ``when``)."""
    keep = {"takenAt": "$takenAt", "timeout": "$timeout", "slots.takenAt": "$slots.takenAt"}
    new = {"takenAt": ISO_NOW, "timeout": time_left(f"{holders}.expiresAt"), "slots.takenAt": ISO_NOW}
    return {key: {"$cond": [when, new[key], keep[key]]} for key in new}


def take_slot(mutex_id: str, node_id: str, timeout_ms: int, holder: Holder, *, kind: str, limit: int | None,
              token: str) -> list[dict[str, Any]]:
    """Add a holder if the mutex is not held exclusively, holds no other kind or limit, and has room
    (a semaphore: fewer than ``limit`` live slots; shared: no writer announced). The new holder
    carries ``token``: the caller finds it in the returned document iff it got in."""
    owner = slot_owner(kind)
    # An exclusive waiter announced (writerWaiting) holds off new holders of either kind: it is next.
    room = {"$and": [{"$lt": [{"$size": "$_l"}, limit]}, _not("$_w")]} if kind == SEMAPHORE else _not("$_w")
    same = {"$or": [{"$eq": [{"$size": "$_l"}, 0]},
                    {"$and": [{"$eq": ["$slots.kind", kind]}, {"$eq": [{"$ifNull": ["$slots.limit", None]}, limit]}]}]}
    details = details_of(holder)
    new = {"$mergeObjects": [literal_expr(details), {
        "id": token, "node": literal_expr(node_id), "fence": "$_f", "expiresAt": {"$add": ["$$NOW", timeout_ms]},
        "timeout": timeout_ms, "since": "$$NOW"}]}

    def either(taken: Any, kept: str) -> dict[str, Any]:
        return {"$cond": ["$_ok", taken, kept]}

    return [
        {"$set": {"_v": VALID, "_x": EXCLUSIVE_LIVE, "_w": WRITER_WAITING}},
        {"$set": {"_l": {"$cond": ["$_v", live("$slots.holders"), []]}}},
        # Exclusive waiters in line go first (as they do before a plain acquire): fair across kinds.
        {"$set": {"_ok": {"$and": [_not("$_x"), same, room, NO_LIVE_WAITERS]}, "_f": {"$add": [FENCE, 1]}}},
        {"$set": {"_h": {"$concatArrays": ["$_l", [new]]}}},
        {"$set": {
            "_id": {"$ifNull": ["$_id", literal_expr(mutex_id)]}, "mutexId": literal_expr(mutex_id),
            "taken": either(True, "$taken"), "takenAt": either(ISO_NOW, "$takenAt"),
            "takenBy": either(owner, "$takenBy"),
            "timeout": either(time_left("$_h.expiresAt"), "$timeout"),
            "fence": either("$_f", "$fence"),
            "slots": either({"takenAt": ISO_NOW, "takenBy": owner, "kind": kind, "limit": limit, "holders": "$_h",
                             "writerWaiting": {"$cond": ["$_w", "$slots.writerWaiting", None]}}, "$slots"),
            "holder": either("$$REMOVE", "$holder"), "releasedLate": either("$$REMOVE", "$releasedLate"),
            "expiresAt": either("$$REMOVE", "$expiresAt")}},
        {"$unset": ["_v", "_x", "_w", "_l", "_ok", "_f", "_h"]},
    ]


def slot_filter(mutex_id: str, node_id: str, fence: int, *, live_only: bool) -> dict[str, Any]:
    """The document in which ``node_id`` holds the slot ``fence`` (still live, with ``live_only``)."""
    mine: dict[str, Any] = _ours("h", node_id, fence)
    if live_only:
        mine = {"$and": [mine, {"$gt": ["$$h.expiresAt", "$$NOW"]}]}
    found = {"$gt": [{"$size": {"$filter": {"input": "$slots.holders", "as": "h", "cond": mine}}}, 0]}
    return {"mutexId": mutex_id, "taken": True, "slots.holders": {"$elemMatch": {"fence": fence, "node": node_id}},
            "$expr": {"$and": [VALID, found]}}


def renew_slot(node_id: str, fence: int, timeout_ms: int) -> list[dict[str, Any]]:
    """Move the slot's end to now + ``timeout_ms``; ended slots of others are dropped."""
    extended = {"$mergeObjects": ["$$k", {"expiresAt": {"$add": ["$$NOW", timeout_ms]}, "timeout": timeout_ms}]}
    return [
        {"$set": {"_h": {"$map": {"input": live("$slots.holders"), "as": "k",
                                  "in": {"$cond": [_ours("k", node_id, fence), extended, "$$k"]}}}}},
        {"$set": {**_seed_fields("$_h"), "slots.holders": "$_h"}},
        {"$unset": ["_h"]},
    ]


def release_slot(node_id: str, fence: int) -> list[dict[str, Any]]:
    """Drop the slot (and ended ones); the last one leaving frees the mutex. ``releasedLate`` tells
    whether the slot had already ended."""
    mine_live = {"$filter": {"input": "$slots.holders", "as": "h",
                             "cond": {"$and": [_ours("h", node_id, fence), {"$gt": ["$$h.expiresAt", "$$NOW"]}]}}}
    rest = {"$filter": {"input": live("$slots.holders"), "as": "k", "cond": _not(_ours("k", node_id, fence))}}
    left = {"$gt": [{"$size": "$_h"}, 0]}
    mine = {"$arrayElemAt": [{"$filter": {"input": "$slots.holders", "as": "h", "cond": _ours("h", node_id, fence)}},
                             0]}
    return [
        {"$set": {"_late": {"$eq": [{"$size": mine_live}, 0]}, "_h": rest, "_m": mine}},
        {"$set": {"taken": left, **_seed_fields("$_h", when=left), "slots.holders": "$_h", "releasedLate": "$_late",
                  # the holder that left, and when, for the lease history
                  "slots.released": {"$mergeObjects": ["$_m", {"at": "$$NOW"}]}}},
        {"$unset": ["_h", "_late", "_m"]},
    ]


def target(var: str, node: str | None, fence: int | None) -> dict[str, Any]:
    """A forced release's choice among the holders: by node, by fence, or (neither) all of them."""
    checks: list[dict[str, Any]] = []
    if node is not None:
        checks.append({"$eq": [f"$${var}.node", literal_expr(node)]})
    if fence is not None:
        checks.append({"$eq": [f"$${var}.fence", fence]})
    return {"$and": checks} if checks else {"$literal": True}


def force_slots(record_id: str, by_node: str, by: Holder, reason: str, *, node: str | None,
                fence: int | None, outbox: int) -> list[dict[str, Any]]:
    """Drop the chosen live holders, each with its record in the document's ``forced`` outbox."""
    record = {"id": {"$concat": [record_id, "-", {"$toString": "$$g.fence"}]}, "at": "$$NOW",
              "byNode": literal_expr(by_node), "byUser": literal_expr(by.user), "byHost": literal_expr(by.host),
              "reason": literal_expr(reason), "previousHolder": "$$g.node", "previousFence": "$$g.fence"}
    kept = {"$cond": [{"$isArray": "$forced"}, "$forced", []]}
    left = {"$gt": [{"$size": "$_h"}, 0]}
    record["heldMs"] = {"$subtract": ["$$NOW", "$$g.since"]}  # (for the lease history)
    return [
        {"$set": {"_l": live("$slots.holders")}},
        {"$set": {"_g": {"$filter": {"input": "$_l", "as": "g", "cond": target("g", node, fence)}},
                  "_h": {"$filter": {"input": "$_l", "as": "g", "cond": _not(target("g", node, fence))}}}},
        {"$set": {"forced": {"$slice": [{"$concatArrays": [kept, {"$map": {"input": "$_g", "as": "g", "in": record}}]},
                                        {"$multiply": [-1, {"$max": [outbox, {"$size": "$_g"}]}]}]},
                  "taken": left, **_seed_fields("$_h", when=left), "slots.holders": "$_h"}},
        {"$unset": ["_l", "_g", "_h"]},
    ]


def forced_filter(mutex_id: str, node: str | None, fence: int | None) -> dict[str, Any]:
    """A mutex whose slots are current and among whose live holders the forced release's choice is."""
    chosen = {"$filter": {"input": live("$slots.holders", "x"), "as": "g", "cond": target("g", node, fence)}}
    return {"mutexId": mutex_id, "taken": True, "$expr": {"$and": [VALID, {"$gt": [{"$size": chosen}, 0]}]}}


def announce_writer(node_id: str) -> list[dict[str, Any]]:
    writer = {"node": literal_expr(node_id), "until": {"$add": ["$$NOW", ANNOUNCE_MS]}}
    return [{"$set": {"slots.writerWaiting": writer}}]
