"""Waiting for an exclusive lease in line: the waiter's side of the store's queue (first come, first
served by ticket), and how long to sleep between polls.

A waiter sleeps until the holder's lease ends on the store's clock (so a crashed holder is taken over
right at its expiry) or until its next poll, whichever is sooner. The poll interval follows the
current lease's age — half of it, from MIN_POLL_S up to MAX_POLL_S — so a short hold is handed on
within a few tens of milliseconds and a long one costs one poll a second; each place further back
in line doubles it. Every poll also refreshes the waiter's entry: MAX_POLL_S stays well below
stores.common.WAITER_STALE_MS, after which an entry that stopped (its process died) is skipped."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from .errors import StoreError
from .models import Holder, MutexState, Turn

if TYPE_CHECKING:
    from .stores.protocols import LeaseStore

MIN_POLL_S = 0.025
MAX_POLL_S = 1.0


class Queue:
    def __init__(self, store: LeaseStore, mutex_id: str) -> None:
        self.store, self.mutex_id = store, mutex_id
        import uuid  # (only a waiter pays for it)

        self.token = uuid.uuid4().hex  # names this waiter's entry
        self.joined = False

    def poll(self, node_id: str, timeout_ms: int, holder: Holder, waited_ms: int) -> Turn:
        return self.store.wait_turn(self.mutex_id, node_id, timeout_ms, holder, token=self.token, waited_ms=waited_ms)

    def leave(self) -> None:
        """Best effort: an entry left behind goes stale on its own."""
        if self.joined:
            with contextlib.suppress(StoreError):
                self.store.leave_queue(self.mutex_id, self.token)


def pause_s(turn: Turn) -> float:
    """How long to sleep after a poll that did not get the lease."""
    age_s = None if turn.held_for_ms is None else turn.held_for_ms / 1000
    interval = MIN_POLL_S if age_s is None else min(MAX_POLL_S, max(MIN_POLL_S, age_s / 2))
    interval = min(MAX_POLL_S, interval * 2 ** max(0, min(turn.position - 1, 6)))
    if turn.holder_left_ms is not None and turn.position <= 1:  # next in line: be there when it ends
        return float(min(interval, turn.holder_left_ms / 1000 + 0.001))
    return float(interval)


class Backoff:
    """A semaphore's or shared lock's waiter (no queue): jittered exponential backoff, never past the
    first holder's expiry."""

    FIRST_S = 0.005
    CAP_S = 1.0

    def __init__(self) -> None:
        self.delay, self.holder_ends = self.FIRST_S, 0.0

    def holder_state(self, state: MutexState | None) -> None:
        if state is not None and state.remaining_ms is not None:
            first_end = min((s.remaining_ms for s in state.slots), default=state.remaining_ms)
            self.holder_ends = time.monotonic() + first_end / 1000

    def pause_s(self) -> float:
        import random  # (only a waiter pays for it)

        pause = self.delay * random.uniform(0.5, 1.0)
        now = time.monotonic()
        if self.holder_ends > now:
            pause = min(pause, self.holder_ends - now + 0.001)
        self.delay = min(self.CAP_S, self.delay * 2)
        return pause


_WAITS = ((5, "5s"), (10, "10s"), (30, "30s"), (60, "1m"), (120, "2m"), (300, "5m"), (600, "10m"), (900, "15m"),
          (1800, "30m"), (3600, "1h"), (7200, "2h"), (21600, "6h"), (86400, "1d"))


def suggested_wait(state: MutexState | None) -> str:
    """A --wait that outlasts the holder's lease (rounded up to a plain duration), if its end is known."""
    if state is None or state.remaining_ms is None:
        return "inf" if state is not None and state.taken else "30s"
    left = min((slot.remaining_ms for slot in state.slots), default=state.remaining_ms)  # the first slot to end
    needed = left / 1000 * 1.1 + 1  # the lease, a little more for the poll
    return next((text for seconds, text in _WAITS if seconds >= needed), "inf")
