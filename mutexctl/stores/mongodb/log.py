"""The broadcast log on MongoDB: a counter per channel, messages, acks and the live-node registry."""

from __future__ import annotations

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...models import Ack, Message
from .documents import literal, message, utc
from .schema import MongoSchema


class MongoLog(MongoSchema):
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

    def append_message(self, msg: Message) -> None:
        with self._errors():
            self._messages.insert_one({
                "_id": msg.id, "channel": msg.channel, "seq": msg.seq, "action": msg.action, "payload": msg.payload,
                "sender": msg.sender, "to": list(msg.to), "expected": list(msg.expected), "at": msg.at})

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._errors():
            docs = list(self._messages.find({"channel": channel, "seq": {"$gt": seq}}).sort("seq", 1).limit(limit))
        return [message(d) for d in docs]

    def get_message(self, message_id: str) -> Message | None:
        with self._errors():
            doc = self._messages.find_one({"_id": message_id})
        return message(doc) if doc else None

    def record_ack(self, ack: Ack) -> bool:
        with self._errors():
            try:
                self._acks.insert_one({"_id": f"{ack.message_id}/{ack.node}", "messageId": ack.message_id,
                                       "node": ack.node, "at": ack.at, "status": ack.status,
                                       "durationMs": ack.duration_ms})
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

    def register_node(self, node: str, channel: str, host: str, pid: int) -> int | None:
        with self._errors():
            doc = self._nodes.find_one_and_update(
                {"_id": f"{channel}/{node}"},
                [{"$set": {"node": literal(node), "channel": literal(channel), "lastSeen": "$$NOW",
                           "host": literal(host), "pid": pid}}],
                upsert=True, return_document=ReturnDocument.AFTER, projection={"cursor": 1})
        return None if doc is None or doc.get("cursor") is None else int(doc["cursor"])

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._errors():
            self._nodes.update_one({"_id": f"{channel}/{node}"}, {"$set": {"cursor": cursor}})

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        recent = {"$gte": ["$lastSeen", {"$subtract": ["$$NOW", int(within_s * 1000)]}]}  # the server's clock
        with self._errors():
            docs = self._nodes.find({"channel": channel, "$expr": recent}, {"node": 1}).sort("node", 1)
            return [d["node"] for d in docs]
