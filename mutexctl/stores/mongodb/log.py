"""The broadcast log on MongoDB: a counter per channel, messages, acks and the live-node registry.
Every time in it is the server's ($$NOW), so the TTL index counts from the server's clock and a
sender with a wrong clock cannot age a message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...errors import StoreError
from ...models import Ack, Message, NodeInfo, Registration
from .base import MongoBase
from .commands import (
    DuplicateKey,
    Operation,
    aggregate,
    find,
    find_one,
    find_one_and_update,
    insert_stamped,
    operation,
    update_one,
)
from .documents import literal_expr, message, utc


class MongoLog(MongoBase):
    @operation
    def next_seq(self, channel: str) -> Operation[int]:
        return next_seq(channel)

    @operation
    def latest_seq(self, channel: str) -> Operation[int]:
        return latest_seq(channel)

    @operation
    def append_message(self, msg: Message) -> Operation[Message]:
        return append_message(msg)

    @operation
    def messages_after(self, channel: str, seq: int, limit: int = 100) -> Operation[list[Message]]:
        return messages_after(channel, seq, limit)

    @operation
    def get_message(self, message_id: str) -> Operation[Message | None]:
        return get_message(message_id)

    @operation
    def record_ack(self, message_id: str, node: str, status: int, duration_ms: int) -> Operation[bool]:
        return record_ack(message_id, node, status, duration_ms)

    @operation
    def acks(self, message_id: str) -> Operation[list[Ack]]:
        return acks(message_id)

    @operation
    def acked(self, node: str, message_ids: list[str]) -> Operation[set[str]]:
        return acked(node, message_ids)

    @operation
    def register_node(self, node: str, channel: str, host: str, pid: int, *, since: int) -> Operation[Registration]:
        return register_node(node, channel, host, pid, since=since)

    @operation
    def save_cursor(self, node: str, channel: str, cursor: int) -> Operation[None]:
        return save_cursor(node, channel, cursor)

    @operation
    def leave_node(self, node: str, channel: str) -> Operation[None]:
        return leave_node(node, channel)

    @operation
    def live_nodes(self, channel: str, within_s: float) -> Operation[list[str]]:
        return live_nodes(channel, within_s)

    @operation
    def nodes(self, channel: str | None) -> Operation[tuple[datetime, list[NodeInfo]]]:
        return nodes(channel)


def next_seq(channel: str) -> Operation[int]:
    doc = yield find_one_and_update("counters", {"_id": channel}, {"$inc": {"seq": 1}}, upsert=True)
    assert doc is not None  # upsert with AFTER always returns the document
    return int(doc["seq"])


def latest_seq(channel: str) -> Operation[int]:
    doc = yield find_one("counters", {"_id": channel})
    return int(doc["seq"]) if doc else 0


def append_message(msg: Message) -> Operation[Message]:
    fields = {"channel": msg.channel, "seq": msg.seq, "action": msg.action, "payload": msg.payload,
              "sender": msg.sender, "to": list(msg.to), "expected": list(msg.expected)}
    try:
        doc = yield insert_stamped("messages", msg.id, fields)
    except DuplicateKey:  # its number was taken twice: never by next_seq
        raise StoreError(f"message {msg.id} is in the log already") from None
    return msg._replace(at=utc(doc["at"]))


def messages_after(channel: str, seq: int, limit: int) -> Operation[list[Message]]:
    docs = yield find("messages", {"channel": channel, "seq": {"$gt": seq}}, sort=[("seq", 1)], limit=limit)
    return [message(d) for d in docs]


def get_message(message_id: str) -> Operation[Message | None]:
    doc = yield find_one("messages", {"_id": message_id})
    return message(doc) if doc else None


def record_ack(message_id: str, node: str, status: int, duration_ms: int) -> Operation[bool]:
    fields = {"messageId": message_id, "node": node, "status": status, "durationMs": duration_ms}
    try:
        yield insert_stamped("acks", f"{message_id}/{node}", fields)
    except DuplicateKey:
        return False
    return True


def acks(message_id: str) -> Operation[list[Ack]]:
    docs = yield find("acks", {"messageId": message_id}, sort=[("node", 1)])
    return [Ack(d["messageId"], d["node"], utc(d["at"]), int(d["status"]), int(d["durationMs"])) for d in docs]


def acked(node: str, message_ids: list[str]) -> Operation[set[str]]:
    if not message_ids:
        return set()
    docs = yield find("acks", {"node": node, "messageId": {"$in": message_ids}}, {"messageId": 1})
    return {d["messageId"] for d in docs}


def register_node(node: str, channel: str, host: str, pid: int, *, since: int) -> Operation[Registration]:
    doc = yield find_one_and_update(
        "nodes", {"_id": f"{channel}/{node}"},
        [{"$set": {"node": literal_expr(node), "channel": literal_expr(channel), "lastSeen": "$$NOW",
                   "host": literal_expr(host), "pid": pid, "since": {"$ifNull": ["$since", since]},
                   "leftAt": None}}],
        upsert=True, projection={"cursor": 1, "since": 1})
    assert doc is not None  # upsert with AFTER always returns the document
    return Registration(_int(doc.get("cursor")), _int(doc.get("since")))


def save_cursor(node: str, channel: str, cursor: int) -> Operation[None]:
    yield update_one("nodes", {"_id": f"{channel}/{node}"}, {"$set": {"cursor": cursor}})


def leave_node(node: str, channel: str) -> Operation[None]:
    yield update_one("nodes", {"_id": f"{channel}/{node}"}, [{"$set": {"leftAt": "$$NOW"}}])


def live_nodes(channel: str, within_s: float) -> Operation[list[str]]:
    recent = {"$gte": ["$lastSeen", {"$subtract": ["$$NOW", int(within_s * 1000)]}]}  # the server's clock
    docs = yield find("nodes", {"channel": channel, "$expr": recent}, {"node": 1}, sort=[("node", 1)])
    return [d["node"] for d in docs]


def nodes(channel: str | None) -> Operation[tuple[datetime, list[NodeInfo]]]:
    """One aggregate: $facet yields one document even when no node is registered, to which the
    server's now and the channels' counters are joined."""
    match: dict[str, Any] = {} if channel is None else {"channel": channel}
    pipeline: list[dict[str, Any]] = [
        {"$facet": {"nodes": [{"$match": match}, {"$sort": {"channel": 1, "node": 1}}]}},
        {"$addFields": {"now": "$$NOW"}},
        {"$lookup": {"from": "counters", "as": "counters", "pipeline": [{"$match": {}}]}},
    ]
    [doc] = yield aggregate("nodes", pipeline)
    latest = {c["_id"]: int(c.get("seq", 0)) for c in doc["counters"]}
    return utc(doc["now"]), [
        NodeInfo(str(d.get("node")), str(d.get("channel")), utc(d["lastSeen"]), d.get("host"), _int(d.get("pid")),
                 _int(d.get("cursor")), _int(d.get("since")), latest.get(d.get("channel"), 0),
                 utc(d["leftAt"]) if isinstance(d.get("leftAt"), datetime) else None)
        for d in doc["nodes"]]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
