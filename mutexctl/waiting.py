"""What waiting for a lease shares, however it waits (in line or with backoff): the deadline, the
holder as last described (for progress and the error at the end), store outages, ``give_up`` and
``on_wait``, and the error a wait ends with."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import DuplicateMutexError, HeldOnHostError, LockHeldError, StoreUnavailableError, WaitTimeoutError
from .flows import Flow, call
from .logs import logger
from .models import LeaseRequest
from .waitline import Backoff, suggested_wait

log = logger("mutexctl.leases")

# Told, while a waiter waits, why (the holder, or the store's outage) and how long it has waited.
WaitCallback = Callable[[LockHeldError | StoreUnavailableError, float], None]


class WaitAbandoned(Exception):  # noqa: N818 - not an error: the caller asked to stop waiting
    """Leases.acquire's ``give_up`` said to stop waiting."""


class Waiting:
    """What both ways of waiting share: the deadline, the holder as last described (for progress and
    the error at the end), store outages, ``give_up`` and ``on_wait``."""

    def __init__(self, request: LeaseRequest, on_wait: WaitCallback | None,
                 give_up: Callable[[], bool] | None) -> None:
        self.request, self.on_wait, self.give_up = request, on_wait, give_up
        self.started = time.monotonic()
        self.deadline = self.started + request.wait_s
        self.seen: LockHeldError | None = None
        self.backoff = Backoff()
        self._first_try = True

    def waited_ms(self) -> int:
        """How long the wait has lasted when a try is sent; the first try has not waited (the time
        spent getting ready for it, a queue entry's token and doorbell, is no waiting)."""
        if self._first_try:
            self._first_try = False
            return 0
        return round((time.monotonic() - self.started) * 1000)

    def saw(self, held: LockHeldError, *, told: bool = True) -> LockHeldError:
        """A refused try; ``told``: it says who holds the mutex (else the last description stands)."""
        if self.seen is None or (told and held.state is not None):
            self.seen = held
            self.backoff.holder_state(held.state)
        return self.seen

    def check(self, held: LockHeldError) -> Flow[None]:
        """After a refused try: stop if the caller gives up or the wait is over."""
        if self.give_up is not None and self.give_up():
            raise WaitAbandoned(self.request.mutex_id) from None
        if time.monotonic() >= self.deadline:
            raise (yield from timed_out(self.request.mutex_id, self.seen or held,
                                                      self.request.wait_s)) from None

    def tell(self, held: LockHeldError) -> None:
        if self.on_wait is not None:
            self.on_wait(self.seen or held, time.monotonic() - self.started)

    def outage(self, outage: StoreUnavailableError) -> None:
        """The store did not answer: keep trying within the wait, or raise at its end."""
        if time.monotonic() >= self.deadline:
            raise outage
        log.info("store unreachable while waiting for %s, retrying: %s", self.request.mutex_id, outage.message)
        if self.on_wait is not None:
            self.on_wait(outage, time.monotonic() - self.started)

    def nap_s(self, pause: float | None) -> float:
        """How long to sleep: ``pause`` (None: the backoff's next), never past the deadline."""
        return max(0.0, min(self.backoff.pause_s() if pause is None else pause, self.deadline - time.monotonic()))


def timed_out(mutex_id: str, held: LockHeldError, wait_s: float) -> Flow[LockHeldError]:
    """The error a wait ends with: what holds the mutex, and what the caller can do."""
    if isinstance(held, DuplicateMutexError) or (wait_s <= 0 and isinstance(held, HeldOnHostError)):
        return held  # its message says what to fix (or what holds it, which the store cannot see)
    state = held.state if held.state is not None else (yield from call("get", mutex_id))
    if wait_s <= 0:
        if state is not None and state.taken and state.remaining_ms is None:  # its end cannot be read
            return LockHeldError(mutex_id, state, remedy="force", asked=held.asked)
        return LockHeldError(mutex_id, state, hint=f"wait for it (e.g. {suggested_wait(state)}), or see what "
                                                   "holds it", remedy="wait", asked=held.asked)
    said = held.message if isinstance(held, HeldOnHostError) else LockHeldError(mutex_id, state,
                                                                                 asked=held.asked).message
    return WaitTimeoutError(mutex_id, state, message=f"{said} (gave up after {wait_s:g}s)",
                            remedy="wait-longer", asked=held.asked)
