"""The waiters' queue on SQLite, as a part: a waiter's poll (join, refresh, or take its turn, in one
transaction) and leaving the line. The rows themselves: ``waiters``."""

from __future__ import annotations

from ...models import LeaseRequest, Turn
from ..common import waiting_turn
from . import waiters
from .base import SQLiteBase, read_state
from .exclusive import HeldElsewhereError, take
from .statements import Now, Operation


class SQLiteQueue(SQLiteBase):
    def wait_turn(self, request: LeaseRequest, *, token: str, waited_ms: int) -> Turn:
        self._follow_path()
        try:
            return self._run(wait_turn(self, request, token, waited_ms, self._now()))
        except HeldElsewhereError as elsewhere:  # (it stops at its next renewal: look twice a second)
            state = self._held_elsewhere(request.mutex_id, elsewhere.beacon).state
            return Turn(None, 1, held_for_ms=1000, state=state)

    def leave_queue(self, mutex_id: str, token: str) -> None:
        if self._has_waiters:
            self._run(waiters.leave(mutex_id, token))


def wait_turn(store: SQLiteBase, request: LeaseRequest, token: str, waited_ms: int, now: Now) -> Operation[Turn]:
    """Join or refresh our place in line; first in line, take the lease (as a try does) and leave it."""
    ahead = yield from waiters.join(request.mutex_id, token, request.node_id, request.holder, store._boot, now.ns)
    if ahead == 0:
        lease = yield from take(store, request, waited_ms, now)
        if lease is not None:
            yield from waiters.leave(request.mutex_id, token)
            return Turn(lease)
    return waiting_turn(ahead + 1, (yield from read_state(store, request.mutex_id, now)))
