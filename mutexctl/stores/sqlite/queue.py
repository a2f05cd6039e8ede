"""The waiters' queue on SQLite, as a part: a waiter's poll (join, refresh, or take its turn, in one
transaction) and leaving the line. The rows themselves: ``waiters``."""

from __future__ import annotations

from ...models import LeaseRequest, Turn
from ..common import waiting_turn
from . import waiters
from .base import SQLiteBase
from .exclusive import HeldElsewhereError, take


class SQLiteQueue(SQLiteBase):
    def wait_turn(self, request: LeaseRequest, *, token: str, waited_ms: int) -> Turn:
        mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
        self._follow_path()
        try:
            with self._transaction() as db:
                now_ns = self._now_ns()
                ahead = waiters.join(db, mutex_id, token, node_id, holder, self._boot, now_ns)
                if ahead == 0:
                    lease = take(self, db, mutex_id, node_id, timeout_ms, holder, waited_ms, now_ns)
                    if lease is not None:
                        waiters.leave(db, mutex_id, token)
                        return Turn(lease)
                return waiting_turn(ahead + 1, self._state(db, mutex_id))
        except HeldElsewhereError as elsewhere:  # (it stops at its next renewal: look twice a second)
            return Turn(None, 1, held_for_ms=1000, state=self._held_elsewhere(mutex_id, elsewhere.beacon).state)

    def leave_queue(self, mutex_id: str, token: str) -> None:
        if self._has_waiters:
            with self._transaction() as db:
                waiters.leave(db, mutex_id, token)
