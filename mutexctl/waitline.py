"""Waiting for an exclusive lease in line: the waiter's side of the store's queue (first come, first
served by ticket), and how long to sleep between polls.

A waiter sleeps until the holder's lease ends on the store's clock (so a crashed holder is taken over
right at its expiry), until its next poll, or until it is woken, whichever is sooner.

Woken: a waiter listens on a doorbell, a datagram socket in Linux's abstract namespace named by its
queue entry's token. A process that releases a lease rings the first live waiter of that mutex on
its own host (``ring_first_here``: no store command, a few microseconds), which polls at once and
takes its turn. So while the holder runs on the waiter's host, the waiter only refreshes its entry
(every MAX_POLL_S) between rings. Otherwise (the holder on another host, or a client that does not
ring: another language's, an older mutexctl) the poll interval follows the current lease's age —
half of it, from MIN_POLL_S up to MAX_POLL_S; for another service's lease, which does not say its
age, the age this waiter has seen — so a short hold is handed on within a few tens of
milliseconds and a long one costs one poll a second; each place further back in line doubles it.
A ring is only a hint to look now: a stray one costs one poll, a lost one at most MAX_POLL_S.

Every poll also refreshes the waiter's entry: MAX_POLL_S stays well below
stores.common.WAITER_STALE_MS, after which an entry that stopped (its process died) is skipped."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import StoreError
from .flows import Flow, call
from .models import LeaseRequest, MutexState, Turn

if TYPE_CHECKING:
    import socket

MIN_POLL_S = 0.025
MAX_POLL_S = 1.0


class Queue:
    """A waiter's place in a mutex's queue; ``poll`` and ``leave`` are flows (see flows)."""

    def __init__(self, mutex_id: str) -> None:
        self.mutex_id = mutex_id
        import uuid  # (only a waiter pays for it)

        self.token = uuid.uuid4().hex  # names this waiter's entry, and its doorbell
        self.joined = False  # our entry may be in the queue
        self.bell = Doorbell(None)
        self._unknown_since: float | None = None  # when we first saw a holder whose age the store cannot tell

    def poll(self, request: LeaseRequest, waited_ms: int) -> Flow[Turn]:
        """One write: join the queue (the first time: rings reach us from then on), refresh our
        place, or take the lease (which leaves the queue)."""
        if not self.joined:
            self.joined, self.bell = True, Doorbell(self.token)
        turn: Turn = yield from call("wait_turn", request, token=self.token, waited_ms=waited_ms)
        if turn.lease is not None:
            self.joined = False
        return turn

    def pause_s(self, turn: Turn, host: str | None) -> float:
        """How long to sleep after a poll that did not get the lease, on this host (see the module's
        docstring): until a ring, when the holder is a process here that will ring."""
        if self.bell.listening and host is not None and turn.holder_host == host:
            left = turn.holder_left_ms
            return MAX_POLL_S if left is None or turn.position > 1 else min(MAX_POLL_S, left / 1000 + 0.001)
        if turn.held_for_ms is None and turn.holder_left_ms is not None:
            # Held, but for how long is not written (another service's lease): its age is at least what
            # we have seen of it, so the half-age rule backs off instead of polling at the floor throughout.
            now = time.monotonic()
            self._unknown_since = now if self._unknown_since is None else self._unknown_since
            turn = turn._replace(held_for_ms=round((now - self._unknown_since) * 1000))
        else:
            self._unknown_since = None
        return poll_interval_s(turn)

    def leave(self) -> Flow[None]:
        """Best effort: an entry left behind goes stale on its own."""
        self.bell.close()
        if self.joined:
            try:
                yield from call("leave_queue", self.mutex_id, self.token)
            except StoreError:
                pass


def _bell_address(token: str) -> bytes:
    return b"\0mutexctl-wake-" + token.encode()  # (abstract: no file, gone with the socket)


class Doorbell:
    """A waiter's doorbell: ``sleep`` ends early when rung. Without abstract sockets (not Linux) it
    is a plain sleep, and the waiter polls."""

    def __init__(self, token: str | None) -> None:
        self.sock: socket.socket | None = None
        if token is not None and sys.platform.startswith("linux"):
            import socket

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(_bell_address(token))
            except OSError:
                sock.close()
            else:
                sock.setblocking(False)
                self.sock = sock

    @property
    def listening(self) -> bool:
        return self.sock is not None

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when rung (the rings so far are taken)."""
        if self.sock is None:
            time.sleep(seconds)
            return False
        import select

        if not select.select([self.sock], [], [], max(0.0, seconds))[0]:
            return False
        with contextlib.suppress(OSError):
            while self.sock.recv(16):
                pass
        return True

    async def asleep(self, seconds: float) -> bool:
        """``sleep`` for an event loop: the loop goes on meanwhile."""
        import asyncio

        if self.sock is None:
            await asyncio.sleep(max(0.0, seconds))
            return False
        loop = asyncio.get_running_loop()
        rung: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def ring() -> None:
            if not rung.done():
                rung.set_result(None)

        loop.add_reader(fd, ring)
        try:
            await asyncio.wait_for(rung, max(0.0, seconds))
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            while self.sock is not None and self.sock.recv(16):
                pass
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def ring_first_here(waiters: Sequence[tuple[str | None, str]], host: str) -> None:
    """After a release: wake the first of the mutex's live waiters, in line order ``(host, token)``,
    that runs on this host (if the first of all is elsewhere, ours learns of the new holder at once
    instead of at its next refresh). Best effort, no store command."""
    token = next((token for on, token in waiters if on == host), None)
    if token is None or not sys.platform.startswith("linux"):
        return
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.sendto(b"!", _bell_address(token))


def poll_interval_s(turn: Turn) -> float:
    """How long to sleep after a poll that did not get the lease, when no ring is expected."""
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
