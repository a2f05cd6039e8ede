"""Elections on MongoDB: what each leader announced for its term, a document per election in
``leaders`` (``{_id: mutexId, fence, node, value, at}``, stamped with the server's clock); a later
term's record stands. The mutex's own document (the protocol shared with other services) is untouched."""

from __future__ import annotations

from typing import Any

from ...models import LeaderRecord
from .base import MongoBase
from .commands import Operation, find_one, find_one_and_update, operation
from .documents import literal_expr, utc


class MongoLeaders(MongoBase):
    @operation
    def record_leader(self, mutex_id: str, node_id: str, fence: int, value: str) -> Operation[bool]:
        return record_leader(mutex_id, node_id, fence, value)

    @operation
    def leader_record(self, mutex_id: str) -> Operation[LeaderRecord | None]:
        return read_leader(mutex_id)


def record_leader(mutex_id: str, node_id: str, fence: int, value: str) -> Operation[bool]:
    """One upsert; a record of a later term is kept as it is (a deposed leader's late write)."""
    newer: dict[str, Any] = {"$gt": [fence, {"$ifNull": ["$fence", 0]}]}
    doc = yield find_one_and_update("leaders", {"_id": mutex_id}, [{"$set": {
        "node": {"$cond": [newer, literal_expr(node_id), "$node"]},
        "value": {"$cond": [newer, literal_expr(value), "$value"]},
        "at": {"$cond": [newer, "$$NOW", "$at"]},
        "fence": {"$max": [{"$ifNull": ["$fence", 0]}, fence]}}}], upsert=True, projection={"fence": 1, "node": 1})
    return doc is not None and doc.get("fence") == fence and doc.get("node") == node_id


def read_leader(mutex_id: str) -> Operation[LeaderRecord | None]:
    doc = yield find_one("leaders", {"_id": mutex_id})
    if not doc or not isinstance(doc.get("fence"), int):
        return None
    return LeaderRecord(int(doc["fence"]), str(doc.get("node")), str(doc.get("value", "")), utc(doc["at"]))
