"""MongoDB documents <-> records: the acquire pipeline, and readers that never raise on what another
service wrote (a wrong type gives "unknown", never an exception)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ...models import (
    CLI,
    SEMAPHORE,
    SERVICE,
    SHARED,
    AppliedStep,
    ForcedRelease,
    Holder,
    LeaseEvent,
    Message,
    MutexState,
    OnceMarker,
    SchemaState,
    SlotHolder,
    Waiter,
)
from ..common import WAITER_STALE_MS
from ..seed_document import HOLDER_CURRENT, ISO_NOW, holder_is_current, lease_times, unreadable
from ..seed_document import expiry as doc_expiry

MAX_OUTBOX = 5  # forced-release records a mutex document keeps until they are copied to the history


def literal_expr(value: Any) -> dict[str, Any]:
    """User text inside a pipeline: without $literal, a node id like "$x" would be read as a field path."""
    return {"$literal": value}


# The document's fence as a long (0 when missing or not a number another service left there).
FENCE: dict[str, Any] = {"$cond": [{"$and": [{"$in": [{"$type": "$fence"}, ["int", "long", "double"]]},
                                             {"$gte": ["$fence", 0]}, {"$lt": ["$fence", 2**53]}]},
                                   {"$toLong": "$fence"}, {"$toLong": 0}]}


# A document that existed (it has ``taken``) without a readable fence: another service replaced it,
# or deleted it and wrote it anew. (An upsert's new document has only the filter's mutexId.)
FENCELESS: dict[str, Any] = {"$and": [{"$ne": [{"$type": "$taken"}, "missing"]},
                                      {"$eq": [{"$in": [{"$type": "$fence"}, ["int", "long", "double"]]}, False]}]}


def details_of(holder: Holder) -> dict[str, Any]:
    return {"host": holder.host, "pid": holder.pid, "user": holder.user, "command": holder.command,
            "exec": holder.exec_mode, "via": holder.via}


# How long the lease in the document has been held (its holder stamp current), or null.
HELD_MS: dict[str, Any] = {"$cond": [{"$and": [HOLDER_CURRENT, {"$eq": [{"$type": "$holder.since"}, "date"]}]},
                                     {"$subtract": ["$$NOW", "$holder.since"]}, None]}


# The seed's fields of a lease that an acquire takes over, kept in its holder for the history.
TOOK: dict[str, Any] = {"$cond": [{"$eq": ["$taken", True]}, {
    "takenBy": "$takenBy", "takenAt": "$takenAt", "timeout": "$timeout", "fence": "$fence",
    "holder": {"takenAt": "$holder.takenAt", "takenBy": "$holder.takenBy"}}, None]}


def take_pipeline(mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> list[dict[str, Any]]:
    """The update of a successful acquire: the seed's fields, the next fence, and holder details
    stamped with the takenAt and takenBy they belong to; ``holder.took`` keeps, for the history, the
    seed's fields of the expired lease this one took over (null: it was free), copied as they were
    (judged by the caller with the same rules: see ``took_over``). Fields of older versions, and the
    slots of a semaphore or shared lock whose holders all left, are dropped."""
    return [{"$set": {
        "_id": {"$ifNull": ["$_id", literal_expr(mutex_id)]},  # a new document is named after its mutex
        "mutexId": literal_expr(mutex_id), "taken": True, "takenAt": ISO_NOW, "takenBy": literal_expr(node_id),
        "timeout": timeout_ms, "fence": {"$add": [FENCE, 1]},
        "holder": {"$mergeObjects": [literal_expr(details_of(holder)),
                                     {"takenAt": ISO_NOW, "takenBy": literal_expr(node_id), "since": "$$NOW",
                                      "took": TOOK, "fenceless": FENCELESS}]}}},
        {"$unset": ["expiresAt", "releasedLate", "slots", "waiters"]}]


def previous_lease(took: dict[str, Any], now: datetime) -> tuple[str | None, int | None, int | None]:
    """(previous holder, its fence when its holder stamp was current, ms from its lease's end to
    ``now``) of the lease an acquire took over, from the fields ``take_pipeline`` kept."""
    ended = doc_expiry(took)
    late = None if ended is None else round((now - ended).total_seconds() * 1000)
    fence = took.get("fence") if holder_is_current(took) else None
    return _text(took.get("takenBy")), int_or_none(fence), late


def force_pipeline(record_id: str, by_node: str, by: Holder, reason: str) -> list[dict[str, Any]]:
    """Free the mutex whoever holds it and, in the same write, keep the record of it in the document
    (``forced``, the newest few), so that the release and its record cannot diverge."""
    record = {"id": literal_expr(record_id), "at": "$$NOW", "byNode": literal_expr(by_node),
              "byUser": literal_expr(by.user),
              "byHost": literal_expr(by.host), "reason": literal_expr(reason), "previousHolder": "$takenBy",
              "previousFence": {"$cond": [HOLDER_CURRENT, "$fence", None]}}
    record["heldMs"] = HELD_MS  # (for the lease history)
    kept = {"$cond": [{"$isArray": "$forced"}, "$forced", []]}
    return [{"$set": {"taken": False,
                      "forced": {"$slice": [{"$concatArrays": [kept, [record]]}, -MAX_OUTBOX]}}}]


def listing_pipeline(match: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The matching documents in name order, each with ``extra`` fields computed on the server."""
    return [{"$match": match}, {"$sort": {"mutexId": 1, "_id": 1}}, {"$addFields": extra}]


def by_name(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Documents sorted by mutexId, grouped: one group per mutex (more than one: copies)."""
    groups: list[list[dict[str, Any]]] = []
    for doc in docs:
        if groups and groups[-1][0].get("mutexId") == doc.get("mutexId"):
            groups[-1].append(doc)
        else:
            groups.append([doc])
    return groups


def mutex_state(copies: list[dict[str, Any]], now: datetime | None, *, listed: bool = True) -> MutexState:
    """A mutex from its document(s): from a listing (the server read takenAt, timeout and expiry:
    ``_takenAt``, ``_timeout``, ``_expires``), or raw (force_release's report: read here by the same
    rule, on this host's clock). Whatever another service wrote, this never raises."""
    doc = copies[0] if len(copies) == 1 else next((d for d in copies if d.get("taken") is True), copies[0])
    taken = doc.get("taken") is True
    if listed:
        expires, taken_at, timeout = doc.get("_expires"), doc.get("_takenAt"), doc.get("_timeout")
    else:
        taken_at, timeout, expires = lease_times(doc)
    now = utc(now) if now is not None else datetime.now(UTC)
    expires = utc(expires) if isinstance(expires, datetime) else None
    remaining = None
    if taken and expires is not None:
        remaining = max(0, math.ceil((expires - now) / _MS))
    current = holder_is_current(doc)
    problem = None
    if len(copies) > 1:
        problem = duplicate_problem(str(doc.get("mutexId")), [d.get("_id") for d in copies])
    elif taken and remaining is None:
        problem = unreadable(doc) or "its expiry cannot be read"
    holder = doc.get("holder") if current else None
    state = MutexState(
        str(doc.get("mutexId")), taken, _text(doc.get("takenBy")),
        utc(taken_at) if isinstance(taken_at, datetime) else None, expires,
        round(timeout) if isinstance(timeout, (int, float)) else None, _fence(doc.get("fence")),
        _holder(holder), now, remaining, foreign=taken and not current, problem=problem, copies=len(copies),
        since=_since(holder), waiters=waiters_of(doc, now))
    return _with_slots(state, doc) if slots_current(doc) else state


_MS = timedelta(milliseconds=1)


def slots_current(doc: dict[str, Any]) -> bool:
    """Whether the document's ``slots`` belong to its seed fields (see slot_pipelines.VALID)."""
    slots = doc.get("slots")
    return (doc.get("taken") is True and isinstance(slots, dict) and isinstance(slots.get("takenAt"), str)
            and slots.get("takenAt") == doc.get("takenAt") and slots.get("takenBy") == doc.get("takenBy")
            and slots.get("kind") in (SEMAPHORE, SHARED))


def _with_slots(state: MutexState, doc: dict[str, Any]) -> MutexState:
    """A semaphore's or shared lock's state: its live holders, judged on ``state.store_now``."""
    slots, now = doc["slots"], state.store_now
    holders = []
    for h in slots.get("holders") if isinstance(slots.get("holders"), list) else []:
        ends = h.get("expiresAt") if isinstance(h, dict) else None
        if not isinstance(ends, datetime) or utc(ends) <= now:
            continue
        since = h.get("since")
        timeout = h.get("timeout")
        holders.append(SlotHolder(str(h.get("node")), _fence(h.get("fence")),
                                  utc(since) if isinstance(since, datetime) else None, utc(ends),
                                  math.ceil((utc(ends) - now) / timedelta(milliseconds=1)),
                                  int(timeout) if isinstance(timeout, (int, float)) else None, _holder(h)))
    limit = slots.get("limit")
    waiting = slots.get("writerWaiting")
    writer = None
    if isinstance(waiting, dict) and isinstance(waiting.get("until"), datetime) and utc(waiting["until"]) > now:
        writer = _text(waiting.get("node"))
    return state._replace(kind=slots["kind"], limit=int(limit) if isinstance(limit, int) else None,
                          slots=tuple(holders), writer_waiting=writer, foreign=False, problem=None, holder=None,
                          remaining_ms=max((h.remaining_ms for h in holders), default=0))


def duplicate_problem(mutex_id: str, ids: list[Any]) -> str:
    shown = ", ".join(repr(i) for i in ids[:4]) + (", …" if len(ids) > 4 else "")
    return (f"{len(ids)} documents share mutexId {mutex_id!r} (_id {shown}): mutexctl will not take it "
            f"until one is left; delete the others, then run mutexctl init-schema (it adds the unique index)")


def forced_release(d: dict[str, Any], mutex_id: str | None = None) -> ForcedRelease:
    """A record from the history collection, or from a mutex document's ``forced`` (then ``mutex_id``)."""
    fence = d.get("previousFence")
    return ForcedRelease(mutex_id or d["mutexId"], utc(d["at"]), d["byNode"], d["byUser"], d["byHost"], d["reason"],
                         _text(d.get("previousHolder")), _fence(fence) if fence is not None else None)


def kept_forced_records(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(mutexId, record) for the forced-release records kept in mutex documents."""
    found = []
    for doc in docs:
        records = doc.get("forced")
        if isinstance(records, list):
            found += [(str(doc.get("mutexId")), r) for r in records if isinstance(r, dict) and "id" in r]
    return found


def history_entry(mutex_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as the history collection keeps it (``_id`` is the record's id: copies are idempotent)."""
    return {"_id": record["id"], "mutexId": mutex_id, **{k: v for k, v in record.items() if k != "id"}}


def merge_forced(history: list[dict[str, Any]], kept: list[tuple[str, dict[str, Any]]],
                 limit: int) -> tuple[ForcedRelease, ...]:
    """The history collection and the records still waiting in mutex documents, newest first."""
    seen = {str(d.get("_id")) for d in history}
    entries = list(history) + [history_entry(m, r) for m, r in kept if str(r["id"]) not in seen]
    entries.sort(key=lambda d: utc(d["at"]), reverse=True)
    return tuple(forced_release(d) for d in entries[:limit])


def schema_state(doc: dict[str, Any]) -> SchemaState:
    steps = tuple(AppliedStep(int(s["step"]), utc(s["appliedAt"]), str(s["appliedBy"])) for s in doc.get("steps", []))
    return SchemaState(int(doc["version"]), utc(doc["appliedAt"]), str(doc["appliedBy"]), str(doc["toolVersion"]),
                       steps)


def message(doc: dict[str, Any]) -> Message:
    return Message(doc["_id"], doc["channel"], int(doc["seq"]), doc["action"], doc["payload"], doc["sender"],
                   tuple(doc.get("to") or ()), tuple(doc.get("expected") or ()), utc(doc["at"]))


def has_unique_ids(indexes: Mapping[str, Any]) -> bool:
    return any(spec.get("unique") and [tuple(k) for k in spec.get("key", ())] == [("mutexId", 1)]
               for spec in indexes.values())


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _holder(value: Any) -> Holder | None:
    if not isinstance(value, dict):
        return None
    pid = value.get("pid")
    return Holder(_text(value.get("host")) or "", pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
                  _text(value.get("user")) or "", _text(value.get("command")) or "", value.get("exec") is True,
                  _via(value.get("via")))


def _via(value: Any) -> str | None:
    return value if value in (SERVICE, CLI) else None


def _since(holder: Any) -> datetime | None:
    since = holder.get("since") if isinstance(holder, dict) else None
    return utc(since) if isinstance(since, datetime) else None


def _fence(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else repr(value)


def once_marker(doc: dict[str, Any]) -> OnceMarker:
    pid = doc.get("pid")
    holder = Holder(_text(doc.get("host")) or "", pid if isinstance(pid, int) else 0, _text(doc.get("user")) or "",
                    _text(doc.get("command")) or "")
    fence = doc.get("fence")
    return OnceMarker(str(doc.get("mutexId")), str(doc.get("key")), utc(doc["at"]), str(doc.get("byNode")),
                      _fence(fence) if fence is not None else None, holder)


def event_doc(event: LeaseEvent) -> dict[str, Any]:
    """A history event as the ``history`` collection keeps it."""
    holder = event.holder
    return {"_id": uuid.uuid4().hex, "mutexId": event.mutex_id, "kind": event.kind, "at": event.at,
            "node": event.node, "fence": event.fence,
            "holder": None if holder is None else {"host": holder.host, "pid": holder.pid, "user": holder.user,
                                                   "command": holder.command},
            "waitedMs": event.waited_ms, "heldMs": event.held_ms, "previousHolder": event.previous_holder,
            "previousFence": event.previous_fence, "lateMs": event.late_ms, "reason": event.reason,
            "slot": event.slot}


def ms_between(start: Any, end: Any) -> int | None:
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return None
    return max(0, round((utc(end) - utc(start)).total_seconds() * 1000))


def int_or_none(value: Any) -> int | None:
    return round(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def subdocument(doc: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """``doc[key]`` when it is a subdocument, else empty (another service may have written anything)."""
    value = doc.get(key) if doc is not None else None
    return value if isinstance(value, dict) else {}


# The tolerant readers, for the other modules of this store.
text_of = _text
holder_of = _holder


def lease_event(doc: dict[str, Any]) -> LeaseEvent:
    return LeaseEvent(str(doc.get("mutexId")), str(doc.get("kind")), utc(doc["at"]), _text(doc.get("node")),
                      int_or_none(doc.get("fence")), _holder(doc.get("holder")), int_or_none(doc.get("waitedMs")),
                      int_or_none(doc.get("heldMs")), _text(doc.get("previousHolder")),
                      int_or_none(doc.get("previousFence")),
                      int_or_none(doc.get("lateMs")), _text(doc.get("reason")), _text(doc.get("slot")))


def live_entries(doc: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The entries of a mutex document's queue refreshed within WAITER_STALE_MS of ``now``, in ticket order."""
    queue = doc.get("waiters")
    if not queue:
        return []
    fresh = now - timedelta(milliseconds=WAITER_STALE_MS)
    live = [w for w in (queue if isinstance(queue, list) else []) if isinstance(w, dict)
            and isinstance(w.get("seen"), datetime) and utc(w["seen"]) > fresh]
    return sorted(live, key=lambda w: int_or_none(w.get("ticket")) or 0)


def waiters_of(doc: dict[str, Any], now: datetime) -> tuple[Waiter, ...]:
    """The live waiters in a mutex's document, in ticket order (for status)."""
    found = []
    for w in live_entries(doc, now):
        since = utc(w["since"]) if isinstance(w.get("since"), datetime) else utc(w["seen"])
        found.append(Waiter(_text(w.get("node")) or "?", _text(w.get("host")), int_or_none(w.get("pid")), since,
                            max(0, round((now - since) / timedelta(milliseconds=1))),
                            int_or_none(w.get("ticket")) or 0))
    return tuple(found)
