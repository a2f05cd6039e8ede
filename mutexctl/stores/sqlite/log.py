"""The broadcast log on SQLite: a counter per channel, messages (pruned by the writers, there being
no TTL index), acks and the live-node registry. Every time in it is SQLite's own (SQL_NOW): one
clock for all writers, so a sender with a wrong clock can neither age a message nor prune others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import Ack, Message, NodeInfo, Registration, parse_iso
from .base import SQLiteBase
from .statements import Operation, changed, row, rows, run
from .times import SQL_NOW, sql_ago

_MESSAGE = "id, channel, seq, action, payload, sender, recipients, expected, at"


class SQLiteLog(SQLiteBase):
    def next_seq(self, channel: str) -> int:
        return self._run(next_seq(channel))

    def latest_seq(self, channel: str) -> int:
        return self._run(latest_seq(channel), write=False)

    def append_message(self, message: Message) -> Message:
        return self._run(append_message(message, self.log_retention_s))

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        return self._run(messages_after(channel, seq, limit), write=False)

    def get_message(self, message_id: str) -> Message | None:
        return self._run(get_message(message_id), write=False)

    def record_ack(self, message_id: str, node: str, status: int, duration_ms: int) -> bool:
        return self._run(record_ack(message_id, node, status, duration_ms))

    def acks(self, message_id: str) -> list[Ack]:
        return self._run(acks(message_id), write=False)

    def acked(self, node: str, message_ids: list[str]) -> set[str]:
        return self._run(acked(node, message_ids), write=False)

    def register_node(self, node: str, channel: str, host: str, pid: int, *, since: int) -> Registration:
        return self._run(register_node(node, channel, host, pid, since))

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        self._run(save_cursor(node, channel, cursor))

    def leave_node(self, node: str, channel: str) -> None:
        self._run(leave_node(node, channel))

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        return self._run(live_nodes(channel, within_s), write=False)

    def nodes(self, channel: str | None) -> tuple[datetime, list[NodeInfo]]:
        return self._run(nodes(channel), write=False)


def next_seq(channel: str) -> Operation[int]:
    found = yield row("INSERT INTO counters (channel, seq) VALUES (?, 1) ON CONFLICT (channel) "
                      "DO UPDATE SET seq = seq + 1 RETURNING seq", (channel,))
    return int(found[0])


def latest_seq(channel: str) -> Operation[int]:
    found = yield row("SELECT seq FROM counters WHERE channel = ?", (channel,))
    return int(found[0]) if found else 0


def append_message(message: Message, retention_s: float) -> Operation[Message]:
    import json  # the broadcast log's only (lock commands do without it)

    [at] = yield row(f"INSERT INTO messages ({_MESSAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {SQL_NOW}) RETURNING at",
                     (message.id, message.channel, message.seq, message.action, message.payload, message.sender,
                      json.dumps(message.to), json.dumps(message.expected)))
    # SQLite has no TTL index: the log is pruned here, as it grows, by the store's clock.
    yield run(f"DELETE FROM messages WHERE at < {sql_ago(retention_s)}")
    return message._replace(at=parse_iso(at))


def messages_after(channel: str, seq: int, limit: int) -> Operation[list[Message]]:
    found = yield rows(f"SELECT {_MESSAGE} FROM messages WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                       (channel, seq, limit))
    return [_message(r) for r in found]


def get_message(message_id: str) -> Operation[Message | None]:
    found = yield row(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (message_id,))
    return _message(found) if found else None


def record_ack(message_id: str, node: str, status: int, duration_ms: int) -> Operation[bool]:
    count = yield changed(f"INSERT INTO acks (messageId, node, at, status, durationMs) VALUES (?, ?, {SQL_NOW}, ?, ?) "
                          "ON CONFLICT DO NOTHING", (message_id, node, status, duration_ms))
    return bool(count == 1)


def acks(message_id: str) -> Operation[list[Ack]]:
    found = yield rows("SELECT messageId, node, at, status, durationMs FROM acks WHERE messageId = ? ORDER BY node",
                       (message_id,))
    return [Ack(r[0], r[1], parse_iso(r[2]), r[3], r[4]) for r in found]


def acked(node: str, message_ids: list[str]) -> Operation[set[str]]:
    if not message_ids:
        return set()
    marks = ", ".join("?" for _ in message_ids)
    found = yield rows(f"SELECT messageId FROM acks WHERE node = ? AND messageId IN ({marks})", (node, *message_ids))
    return {r[0] for r in found}


def register_node(node: str, channel: str, host: str, pid: int, since: int) -> Operation[Registration]:
    found = yield row("INSERT INTO nodes (node, channel, lastSeen, host, pid, since) "
                      f"VALUES (?, ?, {SQL_NOW}, ?, ?, ?) ON CONFLICT (node, channel) DO UPDATE SET "
                      "lastSeen = excluded.lastSeen, host = excluded.host, pid = excluded.pid, leftAt = NULL, "
                      "since = coalesce(since, excluded.since) RETURNING cursor, since",
                      (node, channel, host, pid, since))
    return Registration(None if found[0] is None else int(found[0]), None if found[1] is None else int(found[1]))


def save_cursor(node: str, channel: str, cursor: int) -> Operation[None]:
    yield run("UPDATE nodes SET cursor = ? WHERE node = ? AND channel = ?", (cursor, node, channel))


def leave_node(node: str, channel: str) -> Operation[None]:
    yield run(f"UPDATE nodes SET leftAt = {SQL_NOW} WHERE node = ? AND channel = ?", (node, channel))


def live_nodes(channel: str, within_s: float) -> Operation[list[str]]:
    found = yield rows(f"SELECT node FROM nodes WHERE channel = ? AND lastSeen >= {sql_ago(within_s)} ORDER BY node",
                       (channel,))
    return [r[0] for r in found]


def nodes(channel: str | None) -> Operation[tuple[datetime, list[NodeInfo]]]:
    # (a read-only file from before the column existed reads it as NULL)
    columns = {r[1] for r in (yield rows("PRAGMA table_info(nodes)"))}
    since = "n.since" if "since" in columns else "NULL"
    left = "n.leftAt" if "leftAt" in columns else "NULL"
    [now] = yield row(f"SELECT {SQL_NOW}")
    found = yield rows(f"SELECT n.node, n.channel, n.lastSeen, n.host, n.pid, n.cursor, {since}, coalesce(c.seq, 0), "
                       f"{left} "
                       "FROM nodes n LEFT JOIN counters c ON c.channel = n.channel "
                       "WHERE (:channel IS NULL OR n.channel = :channel) ORDER BY n.channel, n.node",
                       {"channel": channel})
    return parse_iso(now), [_node(r) for r in found]


def _node(row: tuple[Any, ...]) -> NodeInfo:
    return NodeInfo(row[0], row[1], parse_iso(row[2]), row[3], row[4], row[5], row[6], int(row[7]),
                    parse_iso(row[8]) if row[8] else None)


def _message(row: tuple[Any, ...]) -> Message:
    import json

    return Message(row[0], row[1], int(row[2]), row[3], row[4], row[5], tuple(json.loads(row[6])),
                   tuple(json.loads(row[7])), parse_iso(row[8]))
