"""What on-call reads on SQLite: one mutex's state, the overview (every mutex with its slots and
waiters, the forced releases, run-once markers, the schema record and recent history, in one read
transaction), and the forced-release records."""

from __future__ import annotations

from datetime import UTC, datetime

from ...models import ForcedRelease, MutexState, Overview
from . import events
from .base import SQLiteBase, read_schema
from .rows import forced_records, mutex_state, once_markers, with_slots


class SQLiteStatus(SQLiteBase):
    def get(self, mutex_id: str) -> MutexState | None:
        with self._transaction(write=False) as db:
            return self._state(db, mutex_id)

    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Overview:
        with self._transaction(write=False) as db:  # one snapshot of all of it
            rows = db.execute(f"SELECT {self._select} FROM mutexes WHERE (:id IS NULL OR mutexId = :id) "
                              "ORDER BY mutexId", {"id": mutex_id}).fetchall()
            now_ns, now = self._now_ns(), datetime.now(UTC)
            states = self._with_waiters(db, with_slots(db, [mutex_state(row, now_ns, now, self._boot) for row in rows],
                                                        self._boot, now_ns), now_ns)
            markers = once_markers(db, mutex_id) if self._has_slots else ()
            happened = events.read(db, None if mutex_id is None else [mutex_id], None, None, recent) \
                if recent and self._has_history else []
            return Overview(tuple(states), forced_records(db, mutex_id, forced_limit), read_schema(db), now, markers,
                            tuple(happened))

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        with self._transaction(write=False) as db:
            return list(forced_records(db, mutex_id, limit))
