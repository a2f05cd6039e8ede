"""Run-once markers on MongoDB: a document per (mutex, key) in ``once``, stamped with the server's
clock; the first record stands; clearing one is on the forced-release record."""

from __future__ import annotations

import uuid

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...models import Holder, OnceMarker
from .base import MongoBase
from .documents import literal_expr, once_marker


class MongoOnce(MongoBase):
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
