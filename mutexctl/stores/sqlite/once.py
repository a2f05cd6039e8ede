"""Run-once markers on SQLite: (mutex, key) done, stamped with SQLite's clock; the first record
stands; clearing one is on the forced-release record and in the lease history (``once-cleared``)."""

from __future__ import annotations

from ...models import ONCE_CLEARED, Holder, OnceMarker
from . import events
from .base import SQLiteBase
from .rows import FORCED_COLUMNS, MARKER_COLUMNS, marker_of
from .statements import Operation, row, run
from .times import SQL_NOW


class SQLiteOnce(SQLiteBase):
    def once_marker(self, mutex_id: str, key: str) -> OnceMarker | None:
        if not self._has_slots:
            return None
        return self._run(read_marker(mutex_id, key), write=False)

    def mark_once(self, mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> OnceMarker:
        return self._run(mark_once(mutex_id, key, node_id, fence, holder))

    def clear_once(self, mutex_id: str, key: str, by_node: str, by: Holder, reason: str) -> OnceMarker | None:
        return self._run(clear_once(self, mutex_id, key, by_node, by, reason))


def read_marker(mutex_id: str, key: str) -> Operation[OnceMarker | None]:
    found = yield row(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE mutexId = ? AND key = ?", (mutex_id, key))
    return marker_of(found) if found else None


def mark_once(mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> Operation[OnceMarker]:
    """Record (mutex, key) done, stamped with SQLite's clock; the first record stands."""
    yield run(f"INSERT INTO once_markers ({MARKER_COLUMNS}) VALUES (?, ?, {SQL_NOW}, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT DO NOTHING", (mutex_id, key, node_id, fence, holder.host, holder.pid, holder.user,
                                         holder.command))
    marker = yield from read_marker(mutex_id, key)
    assert marker is not None  # written, or there already
    return marker


def clear_once(store: SQLiteBase, mutex_id: str, key: str, by_node: str, by: Holder,
               reason: str) -> Operation[OnceMarker | None]:
    """Remove the marker and record it (the forced releases, the history), in one transaction."""
    marker = yield from read_marker(mutex_id, key)
    if marker is None:
        return None
    yield run("DELETE FROM once_markers WHERE mutexId = ? AND key = ?", (mutex_id, key))
    yield run(f"INSERT INTO forced_releases ({FORCED_COLUMNS}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
              (mutex_id, by_node, by.user, by.host, f"[once {key}] {reason}", marker.by_node, marker.fence))
    if store._has_history:
        yield from events.record(store.history_retention_s, mutex_id, ONCE_CLEARED, by_node, None, by,
                                 previous_holder=marker.by_node, previous_fence=marker.fence,
                                 reason=f"[once {key}] {reason}")
    return marker
