"""The broadcast log on SQLite: a counter per channel, messages (pruned by the writers, there being
no TTL index), acks and the live-node registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ...models import Ack, Message, iso_ms, parse_iso
from .schema import SQLiteSchema

_MESSAGE = "id, channel, seq, action, payload, sender, recipients, expected, at"


class SQLiteLog(SQLiteSchema):
    def next_seq(self, channel: str) -> int:
        with self._transaction() as db:
            return int(db.execute("INSERT INTO counters (channel, seq) VALUES (?, 1) ON CONFLICT (channel) "
                                  "DO UPDATE SET seq = seq + 1 RETURNING seq", (channel,)).fetchone()[0])

    def latest_seq(self, channel: str) -> int:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT seq FROM counters WHERE channel = ?", (channel,)).fetchone()
        return int(row[0]) if row else 0

    def append_message(self, message: Message) -> None:
        import json  # the broadcast log's only (lock commands do without it)

        with self._transaction() as db:
            db.execute(f"INSERT INTO messages ({_MESSAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (message.id, message.channel, message.seq, message.action, message.payload, message.sender,
                        json.dumps(message.to), json.dumps(message.expected), iso_ms(message.at)))
            # SQLite has no TTL index: the log is pruned here, as it grows.
            db.execute("DELETE FROM messages WHERE at < ?",
                       (iso_ms(message.at - timedelta(seconds=self.log_retention_s)),))

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                              (channel, seq, limit)).fetchall()
        return [_message(row) for row in rows]

    def get_message(self, message_id: str) -> Message | None:
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    def record_ack(self, ack: Ack) -> bool:
        with self._transaction() as db:
            return bool(db.execute("INSERT INTO acks (messageId, node, at, status, durationMs) VALUES (?, ?, ?, ?, ?) "
                                   "ON CONFLICT DO NOTHING",
                                   (ack.message_id, ack.node, iso_ms(ack.at), ack.status,
                                    ack.duration_ms)).rowcount == 1)

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

    def register_node(self, node: str, channel: str, host: str, pid: int) -> int | None:
        with self._transaction() as db:
            row = db.execute("INSERT INTO nodes (node, channel, lastSeen, host, pid) VALUES (?, ?, ?, ?, ?) "
                             "ON CONFLICT (node, channel) DO UPDATE SET lastSeen = excluded.lastSeen, "
                             "host = excluded.host, pid = excluded.pid RETURNING cursor",
                             (node, channel, iso_ms(datetime.now(UTC)), host, pid)).fetchone()
        return None if row[0] is None else int(row[0])

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE nodes SET cursor = ? WHERE node = ? AND channel = ?", (cursor, node, channel))

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        since = iso_ms(datetime.now(UTC) - timedelta(seconds=within_s))
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT node FROM nodes WHERE channel = ? AND lastSeen >= ? ORDER BY node",
                              (channel, since)).fetchall()
        return [r[0] for r in rows]


def _message(row: tuple[Any, ...]) -> Message:
    import json

    return Message(row[0], row[1], int(row[2]), row[3], row[4], row[5], tuple(json.loads(row[6])),
                   tuple(json.loads(row[7])), parse_iso(row[8]))
