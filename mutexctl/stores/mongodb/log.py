"""The broadcast log on MongoDB: a counter per channel, messages, acks and the live-node registry.
Every time in it is the server's ($$NOW), so the TTL index counts from the server's clock and a
sender with a wrong clock cannot age a message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import StoreError
from ...models import Ack, Message, NodeInfo, Registration
from .base import MongoBase
from .documents import literal_expr, message, utc


class MongoLog(MongoBase):
    def next_seq(self, channel: str) -> int:
        with self._errors():
            doc = self._counters.find_one_and_update({"_id": channel}, {"$inc": {"seq": 1}}, upsert=True,
                                                     return_document=ReturnDocument.AFTER)
        assert doc is not None  # upsert with AFTER always returns the document
        return int(doc["seq"])

    def latest_seq(self, channel: str) -> int:
        with self._errors():
            doc = self._counters.find_one({"_id": channel})
        return int(doc["seq"]) if doc else 0

    def append_message(self, msg: Message) -> Message:
        fields = {"channel": msg.channel, "seq": msg.seq, "action": msg.action, "payload": msg.payload,
                  "sender": msg.sender, "to": list(msg.to), "expected": list(msg.expected)}
        with self._errors():
            try:
                doc = _insert_stamped(self._messages, msg.id, fields)
            except DuplicateKeyError as exc:  # its number was taken twice: never by next_seq
                raise StoreError(f"message {msg.id} is in the log already") from exc
        return msg._replace(at=utc(doc["at"]))

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._errors():
            docs = list(self._messages.find({"channel": channel, "seq": {"$gt": seq}}).sort("seq", 1).limit(limit))
        return [message(d) for d in docs]

    def get_message(self, message_id: str) -> Message | None:
        with self._errors():
            doc = self._messages.find_one({"_id": message_id})
        return message(doc) if doc else None

    def record_ack(self, message_id: str, node: str, status: int, duration_ms: int) -> bool:
        fields = {"messageId": message_id, "node": node, "status": status, "durationMs": duration_ms}
        with self._errors():
            try:
                _insert_stamped(self._acks, f"{message_id}/{node}", fields)
            except DuplicateKeyError:
                return False
        return True

    def acks(self, message_id: str) -> list[Ack]:
        with self._errors():
            docs = list(self._acks.find({"messageId": message_id}).sort("node", 1))
        return [Ack(d["messageId"], d["node"], utc(d["at"]), int(d["status"]), int(d["durationMs"])) for d in docs]

    def acked(self, node: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        with self._errors():
            docs = self._acks.find({"node": node, "messageId": {"$in": message_ids}}, {"messageId": 1})
            return {d["messageId"] for d in docs}

    def register_node(self, node: str, channel: str, host: str, pid: int, *, since: int) -> Registration:
        with self._errors():
            doc = self._nodes.find_one_and_update(
                {"_id": f"{channel}/{node}"},
                [{"$set": {"node": literal_expr(node), "channel": literal_expr(channel), "lastSeen": "$$NOW",
                           "host": literal_expr(host), "pid": pid, "since": {"$ifNull": ["$since", since]}}}],
                upsert=True, return_document=ReturnDocument.AFTER, projection={"cursor": 1, "since": 1})
        assert doc is not None  # upsert with AFTER always returns the document
        return Registration(_int(doc.get("cursor")), _int(doc.get("since")))

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._errors():
            self._nodes.update_one({"_id": f"{channel}/{node}"}, {"$set": {"cursor": cursor}})

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        recent = {"$gte": ["$lastSeen", {"$subtract": ["$$NOW", int(within_s * 1000)]}]}  # the server's clock
        with self._errors():
            docs = self._nodes.find({"channel": channel, "$expr": recent}, {"node": 1}).sort("node", 1)
            return [d["node"] for d in docs]

    def nodes(self, channel: str | None) -> tuple[datetime, list[NodeInfo]]:
        """One aggregate: $facet yields one document even when no node is registered, to which the
        server's now and the channels' counters are joined."""
        match: dict[str, Any] = {} if channel is None else {"channel": channel}
        pipeline: list[dict[str, Any]] = [
            {"$facet": {"nodes": [{"$match": match}, {"$sort": {"channel": 1, "node": 1}}]}},
            {"$addFields": {"now": "$$NOW"}},
            {"$lookup": {"from": self._counters.name, "as": "counters", "pipeline": [{"$match": {}}]}},
        ]
        with self._errors():
            [doc] = self._nodes.aggregate(pipeline)
        latest = {c["_id"]: int(c.get("seq", 0)) for c in doc["counters"]}
        return utc(doc["now"]), [
            NodeInfo(str(d.get("node")), str(d.get("channel")), utc(d["lastSeen"]), d.get("host"), _int(d.get("pid")),
                     _int(d.get("cursor")), _int(d.get("since")), latest.get(d.get("channel"), 0))
            for d in doc["nodes"]]


def _insert_stamped(collection: Any, doc_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Insert ``{_id: doc_id, **fields, at: $$NOW}``: an upsert whose filter no existing document
    can match (every document has ``at``), so an existing ``_id`` raises DuplicateKeyError, as an
    insert would. Returns the document's ``at``."""
    stamped = [{"$set": {**{key: literal_expr(value) for key, value in fields.items()}, "at": "$$NOW"}}]
    doc = collection.find_one_and_update({"_id": doc_id, "at": {"$exists": False}}, stamped, upsert=True,
                                         return_document=ReturnDocument.AFTER, projection={"at": 1})
    assert doc is not None  # upsert with AFTER always returns the document
    return dict(doc)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
