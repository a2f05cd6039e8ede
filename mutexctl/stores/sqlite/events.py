"""The lease history on SQLite: a row per event, written in the transaction of the operation it
records (so the two commit together), stamped with SQLite's clock, pruned by age as it grows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import Holder, LeaseEvent, parse_iso
from .statements import Operation, row, rows, run
from .times import SQL_NOW, sql_ago

COLUMNS = ("mutexId, kind, at, node, fence, host, pid, user, command, waitedMs, heldMs, previousHolder, "
           "previousFence, lateMs, reason, slot")
PRUNE_EVERY = 256  # rows written between two prunings of what is older than the retention


def record(retention_s: float, mutex_id: str, kind: str, node: str | None, fence: int | None,
           holder: Holder | None = None, **fields: Any) -> Operation[None]:
    """Append one event; fields: waited_ms, held_ms, previous_holder, previous_fence, late_ms, reason, slot."""
    values = (mutex_id, kind, node, fence, holder.host if holder else None, holder.pid if holder else None,
              holder.user if holder else None, holder.command if holder else None, fields.get("waited_ms"),
              fields.get("held_ms"), fields.get("previous_holder"), fields.get("previous_fence"),
              fields.get("late_ms"), fields.get("reason"), fields.get("slot"))
    [row_id] = yield row(f"INSERT INTO history ({COLUMNS}) VALUES (?, ?, {SQL_NOW}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?) RETURNING rowid", values)
    if row_id % PRUNE_EVERY == 0:
        yield run(f"DELETE FROM history WHERE at < {sql_ago(retention_s)}")


def since_ms(moment: datetime | None, now: datetime) -> int | None:
    return None if moment is None else max(0, round((now - moment).total_seconds() * 1000))


def read(mutex_ids: list[str] | None, since_s: float | None, node: str | None,
         limit: int) -> Operation[list[LeaseEvent]]:
    """Events newest first: of ``mutex_ids`` (None: all), of the last ``since_s`` seconds, by ``node``."""
    where, args = ["1 = 1"], []
    if mutex_ids is not None:
        where.append(f"mutexId IN ({', '.join('?' for _ in mutex_ids)})")
        args += mutex_ids
    if since_s is not None:
        where.append(f"at >= {sql_ago(since_s)}")
    if node is not None:
        where.append("(node = ? OR previousHolder = ?)")
        args += [node, node]
    found = yield rows(f"SELECT {COLUMNS} FROM history WHERE {' AND '.join(where)} ORDER BY at DESC, rowid DESC "
                       "LIMIT ?", (*args, limit))
    return [LeaseEvent(r[0], r[1], parse_iso(r[2]), r[3], r[4],
                       Holder(r[5], r[6], r[7], r[8]) if r[5] is not None else None, r[9], r[10], r[11], r[12],
                       r[13], r[14], r[15]) for r in found]
