"""Run-once markers on SQLite: (mutex, key) done, stamped with SQLite's clock; the first record
stands; clearing one is on the forced-release record."""

from __future__ import annotations

from ...models import Holder, OnceMarker
from .base import SQLiteBase
from .rows import FORCED_COLUMNS, MARKER_COLUMNS, marker_of
from .times import SQL_NOW


class SQLiteOnce(SQLiteBase):
    def once_marker(self, mutex_id: str, key: str) -> OnceMarker | None:
        if not self._has_slots:
            return None
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE mutexId = ? AND key = ?",
                             (mutex_id, key)).fetchone()
        return marker_of(row) if row else None

    def mark_once(self, mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> OnceMarker:
        with self._transaction() as db:
            db.execute(f"INSERT INTO once_markers ({MARKER_COLUMNS}) VALUES (?, ?, {SQL_NOW}, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT DO NOTHING",
                       (mutex_id, key, node_id, fence, holder.host, holder.pid, holder.user, holder.command))
            row = db.execute(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE mutexId = ? AND key = ?",
                             (mutex_id, key)).fetchone()
        return marker_of(row)

    def clear_once(self, mutex_id: str, key: str, by_node: str, by: Holder, reason: str) -> OnceMarker | None:
        """Remove the marker and record it, in one transaction."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {MARKER_COLUMNS} FROM once_markers WHERE mutexId = ? AND key = ?",
                             (mutex_id, key)).fetchone()
            if row is None:
                return None
            marker = marker_of(row)
            db.execute("DELETE FROM once_markers WHERE mutexId = ? AND key = ?", (mutex_id, key))
            db.execute(f"INSERT INTO forced_releases ({FORCED_COLUMNS}) VALUES (?, {SQL_NOW}, ?, ?, ?, ?, ?, ?)",
                       (mutex_id, by_node, by.user, by.host, f"[once {key}] {reason}", marker.by_node, marker.fence))
        return marker
