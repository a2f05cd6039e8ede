"""The lease history on SQLite, as a part: events are written in the transaction of the operation
they record (``events``), so nothing waits to be written; an event noticed outside an operation (a
keeper's loss, a refused release) is added here; reading it, newest first."""

from __future__ import annotations

from ...models import LeaseEvent
from . import events
from .base import SQLiteBase


class SQLiteHistory(SQLiteBase):
    def pending_events(self) -> int:
        return 0  # every event is written in its operation's transaction

    def flush_events(self) -> None:
        return None

    def record_event(self, event: LeaseEvent) -> None:
        """An event noticed outside a store operation (a keeper's loss, a refused release)."""
        if not self._has_history:
            return
        self._run(events.record(self.history_retention_s, event.mutex_id, event.kind, event.node, event.fence,
                                event.holder, reason=event.reason, slot=event.slot, held_ms=event.held_ms))

    def history(self, mutex_ids: list[str] | None, *, since_s: float | None = None, node: str | None = None,
                limit: int = 100) -> list[LeaseEvent]:
        if not self._has_history:
            return []
        return self._run(events.read(mutex_ids, since_s, node, limit), write=False)
