"""The seed document, judged the same way by every reader: the shared protocol.

**Seed document**: one document per mutex in the ``mutexes`` collection, with the five fields of the
``MongoMutex`` of the description the project grew from (its "seed": ``P(mutexId, nodeId,
timeoutMs)``/``V(mutexId)``). Services in other languages read and write these fields, so "seed"
in this code always means them: a *seed reader* judges a lease by them alone, a *seed-only* lease is
one a foreign service wrote (no ``fence``/``holder``), the *seed view* of a semaphore is what its
document tells such a reader. The fields: ``mutexId`` (the name; unique index),
``taken`` (bool), ``takenAt`` (the last reservation, renewal included), ``takenBy`` (node id) and
``timeout`` (ms). A lease ends at ``takenAt + timeout`` on the server's clock, for every reader.

Forms read, because real services write them:

- ``takenAt``: an ISO-8601 string (any fraction, ``Z``, an offset, or no zone = UTC; ``T`` or a
  space between date and time); a BSON Date; epoch milliseconds as a number or a digit string.
- ``timeout``: an int, long or double, or a digit string (milliseconds, >= 0).

Any other form (unparsable text, ``null``, a missing field) gives no expiry: such a lease is never
judged expired; it is shown as held with "expiry unknown", and only a forced release frees it.

The rule is written twice: as aggregation expressions, which decide on the server (acquire, renew,
release, status), and in Python, for the report of what a forced release broke. A test holds both
to the same answers for every form. mutexctl's own fields (``fence``, ``holder``) sit beside the
seed's; ``holder`` is stamped with the ``takenAt``/``takenBy`` it belongs to, so a foreign write
that changes either makes it void (see ``holder_is_current``).
"""

from __future__ import annotations

import contextlib
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

# Group 1-8: year, month, day, hour, minute, second, fraction, zone.
ISO_PATTERN = (r"^(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):([0-5]\d)"
               r"(?::([0-5]\d)(?:[.,](\d+))?)?([Zz]|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$")
EPOCH_DIGITS = r"^\d{1,13}$"
MAX_EPOCH_MS = 10**13  # year 2286: a larger number is not a time
MAX_TIMEOUT_MS = 10**13  # about 317 years
_NUMBERS = ["int", "long", "double"]
_ISO = re.compile(ISO_PATTERN)
_EPOCH = re.compile(EPOCH_DIGITS)

# -- on the server ------------------------------------------------------------------------------
# Every branch tests the field's $type first: an operator applied to a wrong type fails the whole
# command on some servers ($dateFromString, $regexFind), whatever its onError says.


def _capture(i: int) -> dict[str, Any]:
    return {"$arrayElemAt": ["$$c", i]}


_ISO_DATE = {"$let": {"vars": {"m": {"$regexFind": {"input": "$takenAt", "regex": ISO_PATTERN}}}, "in": {
    "$cond": [{"$eq": ["$$m", None]}, None, {"$let": {"vars": {"c": "$$m.captures"}, "in": {"$add": [
        {"$dateFromParts": {
            "year": {"$toInt": _capture(0)}, "month": {"$toInt": _capture(1)}, "day": 1,
            "hour": {"$toInt": _capture(3)}, "minute": {"$toInt": _capture(4)},
            "second": {"$toInt": {"$ifNull": [_capture(5), "0"]}},
            # the first three digits of any fraction: the server's dates count milliseconds
            "millisecond": {"$toInt": {"$substrCP": [{"$concat": [{"$ifNull": [_capture(6), ""]}, "000"]}, 0, 3]}},
            "timezone": {"$cond": [{"$in": [{"$ifNull": [_capture(7), "Z"]}, ["Z", "z"]]}, "UTC", _capture(7)]}}},
        # the day is added, not passed: a day past the month's end (February 30th) then rolls over
        # into the next month on every server, instead of failing the whole command on some
        {"$multiply": [{"$subtract": [{"$toInt": _capture(2)}, 1]}, 86_400_000]},
    ]}}}]}}}

# The seed's own form, "2026-11-27T12:03:06.908Z", the one mutexctl writes: read by one cheap
# $dateFromString (null for any other string of that length), the general ISO reading otherwise.
_SEED_FORM = {"$cond": [{"$eq": [{"$strLenCP": "$takenAt"}, 24]}, {"$dateFromString": {
    "dateString": "$takenAt", "format": "%Y-%m-%dT%H:%M:%S.%LZ", "timezone": "UTC", "onError": None}}, None]}
_STRING_DATE = {"$let": {"vars": {"seed": _SEED_FORM}, "in": {"$cond": [
    {"$ne": ["$$seed", None]}, "$$seed",
    {"$cond": [{"$regexMatch": {"input": "$takenAt", "regex": EPOCH_DIGITS}}, {"$toDate": {"$toLong": "$takenAt"}},
               _ISO_DATE]}]}}}

# takenAt as a Date, or null when it is in no form we read.
TAKEN_AT: dict[str, Any] = {"$switch": {"branches": [
    {"case": {"$eq": [{"$type": "$takenAt"}, "date"]}, "then": "$takenAt"},
    {"case": {"$and": [{"$in": [{"$type": "$takenAt"}, _NUMBERS]}, {"$gte": ["$takenAt", 0]},
                       {"$lt": ["$takenAt", MAX_EPOCH_MS]}]},
     "then": {"$toDate": {"$toLong": "$takenAt"}}},
    {"case": {"$eq": [{"$type": "$takenAt"}, "string"]}, "then": _STRING_DATE},
], "default": None}}

# timeout in milliseconds, or null.
TIMEOUT: dict[str, Any] = {"$switch": {"branches": [
    {"case": {"$and": [{"$in": [{"$type": "$timeout"}, _NUMBERS]}, {"$gte": ["$timeout", 0]},
                       {"$lt": ["$timeout", MAX_TIMEOUT_MS]}]}, "then": "$timeout"},
    {"case": {"$and": [{"$eq": [{"$type": "$timeout"}, "string"]},
                       {"$regexMatch": {"input": "$timeout", "regex": r"^\d{1,13}$"}}]},
     "then": {"$toLong": "$timeout"}},
], "default": None}}

# When the lease ends (a Date), or null when takenAt or timeout is unreadable: never expired then.
EXPIRY: dict[str, Any] = {"$add": [TAKEN_AT, TIMEOUT]}
EXPIRED: dict[str, Any] = {"$let": {"vars": {"e": EXPIRY}, "in": {
    "$and": [{"$eq": [{"$type": "$$e"}, "date"]}, {"$lte": ["$$e", "$$NOW"]}]}}}
LIVE: dict[str, Any] = {"$let": {"vars": {"e": EXPIRY}, "in": {
    "$and": [{"$eq": [{"$type": "$$e"}, "date"]}, {"$gt": ["$$e", "$$NOW"]}]}}}
# The same test for a lease this node wrote and still holds (its holder stamp is current, so takenAt
# is in the seed's form): smaller, which matters on servers that compile every expression per command.
EXPIRED_OWN: dict[str, Any] = {"$let": {"vars": {"e": {"$cond": [
    {"$in": [{"$type": "$timeout"}, _NUMBERS]}, {"$add": [_SEED_FORM, "$timeout"]}, None]}}, "in": {
    "$and": [{"$eq": [{"$type": "$$e"}, "date"]}, {"$lte": ["$$e", "$$NOW"]}]}}}
# The seed's takenAt form, written by mutexctl on every acquire and renewal.
ISO_NOW: dict[str, Any] = {"$dateToString": {"date": "$$NOW", "format": "%Y-%m-%dT%H:%M:%S.%LZ", "timezone": "UTC"}}
# mutexctl's holder details belong to the lease whose takenAt and takenBy they carry.
HOLDER_CURRENT: dict[str, Any] = {"$and": [{"$eq": [{"$type": "$holder.takenAt"}, "string"]},
                                           {"$eq": ["$holder.takenAt", "$takenAt"]},
                                           {"$eq": ["$holder.takenBy", "$takenBy"]}]}


# -- in Python: the same rule, for reports --------------------------------------------------------


def taken_at_time(value: object) -> datetime | None:
    """``takenAt`` as an aware UTC datetime, or None when it is in no form we read."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if _is_number(value) and 0 <= value < MAX_EPOCH_MS:  # type: ignore[operator]
        return _from_epoch_ms(int(value))  # type: ignore[call-overload]
    if not isinstance(value, str):
        return None
    if len(value) == 24 and value[10] == "T" and value[19] == "." and value[23] == "Z" and value.isascii():
        with contextlib.suppress(ValueError):  # the seed's own form, read fast (anything odd: as below)
            return datetime.fromisoformat(value)
    if _EPOCH.match(value):
        return _from_epoch_ms(int(value))
    match = _ISO.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    # A day past the month's end (February 30th) rolls over into the next month, as on the server.
    moment = datetime(int(year), int(month), 1, int(hour), int(minute), int(second or 0),
                      int((fraction or "")[:3].ljust(3, "0")) * 1000, tzinfo=UTC)
    return moment + timedelta(days=int(day) - 1) - _offset(zone)


def timeout_ms(value: object) -> float | None:
    """``timeout`` in milliseconds, or None when it is in no form we read."""
    if _is_number(value) and 0 <= value < MAX_TIMEOUT_MS:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, str) and re.fullmatch(r"\d{1,13}", value):
        return float(int(value))
    return None


def lease_times(doc: dict[str, Any]) -> tuple[datetime | None, float | None, datetime | None]:
    """(takenAt, timeout in ms, their sum: the lease's end), each None when it cannot be read."""
    taken_at, timeout = taken_at_time(doc.get("takenAt")), timeout_ms(doc.get("timeout"))
    if taken_at is None or timeout is None:
        return taken_at, timeout, None
    return taken_at, timeout, taken_at + timedelta(milliseconds=timeout)


def expiry(doc: dict[str, Any]) -> datetime | None:
    return lease_times(doc)[2]


def unreadable(doc: dict[str, Any]) -> str | None:
    """Why a taken document has no expiry (for status and errors), or None when it has one."""
    problems = []
    for field, reads in (("takenAt", taken_at_time), ("timeout", timeout_ms)):
        if field not in doc:
            problems.append(f"{field} is missing")
        elif reads(doc[field]) is None:
            problems.append(f"{field} {_show(doc[field])} is not a form mutexctl reads")
    return "; ".join(problems) or None


def holder_is_current(doc: dict[str, Any]) -> bool:
    """Whether ``holder`` belongs to the lease in the seed's fields (see HOLDER_CURRENT)."""
    holder = doc.get("holder")
    return (isinstance(holder, dict) and isinstance(holder.get("takenAt"), str)
            and holder.get("takenAt") == doc.get("takenAt") and holder.get("takenBy") == doc.get("takenBy"))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _from_epoch_ms(milliseconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=milliseconds)


def _offset(zone: str | None) -> timedelta:
    if zone is None or zone in "Zz":
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    return timedelta(minutes=minutes if zone[0] == "+" else -minutes)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
