"""The lease history on MongoDB, as a part: this process's events are queued by the operations and
written by ``flush_events`` (the base's, off the hot path); an event noticed outside an operation is
one write here; reading it, newest first."""

from __future__ import annotations

import uuid
from typing import Any

from ...models import LeaseEvent
from .base import MongoBase
from .commands import Operation, find, insert_stamped, operation
from .documents import lease_event


class MongoHistory(MongoBase):
    @operation
    def record_event(self, event: LeaseEvent) -> Operation[None]:
        """An event noticed outside a store operation (a keeper's loss, a refused release): one
        write to the history collection, stamped with the server's clock."""
        return record_event(event, record_id=uuid.uuid4().hex)

    def history(self, mutex_ids: list[str] | None, *, since_s: float | None = None, node: str | None = None,
                limit: int = 100) -> list[LeaseEvent]:
        """The events of ``mutex_ids`` (None: all), newest first; this process's own still queued
        are written first."""
        self.flush_events()
        return self._run(read_history(mutex_ids, since_s, node, limit))


def record_event(event: LeaseEvent, *, record_id: str) -> Operation[None]:
    holder = event.holder
    fields = {"mutexId": event.mutex_id, "kind": event.kind, "node": event.node, "fence": event.fence,
              "holder": None if holder is None else {"host": holder.host, "pid": holder.pid, "user": holder.user,
                                                     "command": holder.command},
              "reason": event.reason, "slot": event.slot, "heldMs": event.held_ms}
    yield insert_stamped("history", record_id, fields)


def read_history(mutex_ids: list[str] | None, since_s: float | None, node: str | None,
                 limit: int) -> Operation[list[LeaseEvent]]:
    found: dict[str, Any] = {} if mutex_ids is None else {"mutexId": {"$in": mutex_ids}}
    if since_s is not None:
        found["$expr"] = {"$gte": ["$at", {"$subtract": ["$$NOW", round(since_s * 1000)]}]}
    if node is not None:
        found["$or"] = [{"node": node}, {"previousHolder": node}]
    rows = yield find("history", found, sort=[("at", -1), ("_id", -1)], limit=limit)
    return [lease_event(r) for r in rows]
