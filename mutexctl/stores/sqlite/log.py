"""The broadcast log on SQLite: a counter per channel, messages (pruned by the writers, there being
no TTL index), acks and the live-node registry. Every time in it is SQLite's own (SQL_NOW): one
clock for all writers, so a sender with a wrong clock can neither age a message nor prune others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import Ack, Message, NodeInfo, Registration, parse_iso
from .base import SQLiteBase
from .files import has_column
from .times import SQL_NOW, sql_ago

_MESSAGE = "id, channel, seq, action, payload, sender, recipients, expected, at"


class SQLiteLog(SQLiteBase):
    def next_seq(self, channel: str) -> int:
        with self._transaction() as db:
            return int(db.execute("INSERT INTO counters (channel, seq) VALUES (?, 1) ON CONFLICT (channel) "
                                  "DO UPDATE SET seq = seq + 1 RETURNING seq", (channel,)).fetchone()[0])

    def latest_seq(self, channel: str) -> int:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT seq FROM counters WHERE channel = ?", (channel,)).fetchone()
        return int(row[0]) if row else 0

    def append_message(self, message: Message) -> Message:
        import json  # the broadcast log's only (lock commands do without it)

        with self._transaction() as db:
            at = db.execute(f"INSERT INTO messages ({_MESSAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {SQL_NOW}) "
                            "RETURNING at",
                            (message.id, message.channel, message.seq, message.action, message.payload,
                             message.sender, json.dumps(message.to), json.dumps(message.expected))).fetchone()[0]
            # SQLite has no TTL index: the log is pruned here, as it grows, by the store's clock.
            db.execute(f"DELETE FROM messages WHERE at < {sql_ago(self.log_retention_s)}")
        return message._replace(at=parse_iso(at))

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                              (channel, seq, limit)).fetchall()
        return [_message(row) for row in rows]

    def get_message(self, message_id: str) -> Message | None:
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    def record_ack(self, message_id: str, node: str, status: int, duration_ms: int) -> bool:
        with self._transaction() as db:
            return bool(db.execute("INSERT INTO acks (messageId, node, at, status, durationMs) "
                                   f"VALUES (?, ?, {SQL_NOW}, ?, ?) ON CONFLICT DO NOTHING",
                                   (message_id, node, status, duration_ms)).rowcount == 1)

    def acks(self, message_id: str) -> list[Ack]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT messageId, node, at, status, durationMs FROM acks WHERE messageId = ? "
                              "ORDER BY node", (message_id,)).fetchall()
        return [Ack(r[0], r[1], parse_iso(r[2]), r[3], r[4]) for r in rows]

    def acked(self, node: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        marks = ", ".join("?" for _ in message_ids)
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT messageId FROM acks WHERE node = ? AND messageId IN ({marks})",
                              (node, *message_ids)).fetchall()
        return {r[0] for r in rows}

    def register_node(self, node: str, channel: str, host: str, pid: int, *, since: int) -> Registration:
        with self._transaction() as db:
            row = db.execute("INSERT INTO nodes (node, channel, lastSeen, host, pid, since) "
                             f"VALUES (?, ?, {SQL_NOW}, ?, ?, ?) "
                             "ON CONFLICT (node, channel) DO UPDATE SET lastSeen = excluded.lastSeen, "
                             "host = excluded.host, pid = excluded.pid, since = coalesce(since, excluded.since) "
                             "RETURNING cursor, since", (node, channel, host, pid, since)).fetchone()
        return Registration(None if row[0] is None else int(row[0]), None if row[1] is None else int(row[1]))

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE nodes SET cursor = ? WHERE node = ? AND channel = ?", (cursor, node, channel))

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT node FROM nodes WHERE channel = ? AND lastSeen >= {sql_ago(within_s)} "
                              "ORDER BY node", (channel,)).fetchall()
        return [r[0] for r in rows]

    def nodes(self, channel: str | None) -> tuple[datetime, list[NodeInfo]]:
        with self._transaction(write=False) as db:
            since = "n.since" if has_column(db, "nodes", "since") else "NULL"  # a read-only file from before it
            now = db.execute(f"SELECT {SQL_NOW}").fetchone()[0]
            rows = db.execute(f"SELECT n.node, n.channel, n.lastSeen, n.host, n.pid, n.cursor, {since}, "
                              "coalesce(c.seq, 0) FROM nodes n LEFT JOIN counters c ON c.channel = n.channel "
                              "WHERE (:channel IS NULL OR n.channel = :channel) ORDER BY n.channel, n.node",
                              {"channel": channel}).fetchall()
        return parse_iso(now), [_node(row) for row in rows]


def _node(row: tuple[Any, ...]) -> NodeInfo:
    return NodeInfo(row[0], row[1], parse_iso(row[2]), row[3], row[4], row[5], row[6], int(row[7]))


def _message(row: tuple[Any, ...]) -> Message:
    import json

    return Message(row[0], row[1], int(row[2]), row[3], row[4], row[5], tuple(json.loads(row[6])),
                   tuple(json.loads(row[7])), parse_iso(row[8]))
