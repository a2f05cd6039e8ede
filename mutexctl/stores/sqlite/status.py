"""What on-call reads on SQLite: one mutex's state, the overview (every mutex with its slots and
waiters, the forced releases, run-once markers, the schema record and recent history, in one read
transaction), and the forced-release records."""

from __future__ import annotations

from ...models import ForcedRelease, MutexState, Overview
from . import events
from .base import SQLiteBase, read_state, schema_record, with_waiters
from .rows import forced_records, mutex_state, once_markers, with_slots
from .statements import Now, Operation, rows


class SQLiteStatus(SQLiteBase):
    def get(self, mutex_id: str) -> MutexState | None:
        return self._run(read_state(self, mutex_id, self._now()), write=False)

    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Overview:
        return self._run(overview(self, mutex_id, forced_limit, recent, self._now()), write=False)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        return list(self._run(forced_records(mutex_id, limit), write=False))


def overview(store: SQLiteBase, mutex_id: str | None, forced_limit: int, recent: int,
             now: Now) -> Operation[Overview]:
    """One read transaction, one snapshot of all of it."""
    found = yield rows(f"SELECT {store._select} FROM mutexes WHERE (:id IS NULL OR mutexId = :id) ORDER BY mutexId",
                       {"id": mutex_id})
    states = yield from with_slots([mutex_state(r, now.ns, now.wall, store._boot) for r in found], store._boot, now.ns)
    states = yield from with_waiters(store, states, now.ns)
    markers = (yield from once_markers(mutex_id)) if store._has_slots else ()
    happened = (yield from events.read(None if mutex_id is None else [mutex_id], None, None, recent)) \
        if recent and store._has_history else []
    schema = yield from schema_record()
    return Overview(tuple(states), (yield from forced_records(mutex_id, forced_limit)), schema, now.wall, markers,
                    tuple(happened))
