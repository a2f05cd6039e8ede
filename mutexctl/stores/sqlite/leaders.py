"""Elections on SQLite: what each leader announced for its term, a row per election; a later term's
record stands."""

from __future__ import annotations

from ...models import LeaderRecord, parse_iso
from .base import SQLiteBase
from .statements import Operation, changed, row
from .times import SQL_NOW


class SQLiteLeaders(SQLiteBase):
    def record_leader(self, mutex_id: str, node_id: str, fence: int, value: str) -> bool:
        return self._run(record_leader(mutex_id, node_id, fence, value))

    def leader_record(self, mutex_id: str) -> LeaderRecord | None:
        return self._run(read_leader(mutex_id), write=False)


def record_leader(mutex_id: str, node_id: str, fence: int, value: str) -> Operation[bool]:
    """Written only while that lease is ``node_id``'s, and never over a later term."""
    count = yield changed(
        f"INSERT INTO leaders (mutexId, fence, node, value, at) SELECT ?, ?, ?, ?, {SQL_NOW} WHERE EXISTS "
        "(SELECT 1 FROM mutexes WHERE mutexId = ? AND taken = 1 AND fence = ? AND takenBy = ?) "
        "ON CONFLICT (mutexId) DO UPDATE SET fence = excluded.fence, node = excluded.node, value = excluded.value, "
        "at = excluded.at WHERE excluded.fence > leaders.fence",
        (mutex_id, fence, node_id, value, mutex_id, fence, node_id))
    return bool(count)


def read_leader(mutex_id: str) -> Operation[LeaderRecord | None]:
    [present] = yield row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'leaders'")
    if not present:  # a read-only file of a release before elections
        return None
    found = yield row("SELECT fence, node, value, at FROM leaders WHERE mutexId = ?", (mutex_id,))
    return LeaderRecord(int(found[0]), found[1], found[2], parse_iso(found[3])) if found else None
