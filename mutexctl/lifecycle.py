"""A Service's leases through its life: what it took, what its ``lock()`` blocks hold, and its end.

The rules, for a service that must not leave leases behind nor let work outlive them:

- ``close()`` (and leaving ``with mutexctl.connect() as svc:``) takes no new lease, tells every
  running ``lock()`` block to stop (its ``stop_event`` and ``on_lost`` callback) and gives each up to
  its stop grace to leave (leaving releases it); then it releases every lease taken without a block
  (``P``, ``try_acquire``, ``acquire``). Each release is recorded in the history with the reason
  ("shutdown", or "shutdown on SIGTERM"). A block still running after its grace keeps its lease
  until it leaves or the lease runs out: a lease is never released under work that still runs.
- ``release_on_signals()``: SIGTERM/SIGINT start that shutdown at once and end the main thread's
  work with SystemExit(128+N), the status a shell gives a process that signal N ended; the
  unwinding leaves the blocks it was in (releasing them), then ``close()`` runs (the ``with``, or
  at interpreter exit).
- At interpreter exit every Service not closed yet is closed (after non-daemon threads ended).
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from .errors import MutexctlError, NotOwnerError, ShutdownError, UsageError
from .flows import Flow, drive
from .logs import logger
from .models import Lease

if TYPE_CHECKING:  # (the keeper is imported when a block ends the Service: not on every CLI run's start)
    from .keeper import HeldLease
    from .leases import Leases

log = logger(__name__)

SHUTDOWN = "shutdown"
_open: weakref.WeakSet[Lifecycle] = weakref.WeakSet()  # closed at interpreter exit


class Lifecycle:
    """The leases one Service holds (its HoldRegistry), and how they end."""

    def __init__(self, leases: Leases, *, on_close: Callable[[], None], at_exit: bool = True) -> None:
        self._leases = leases
        self._on_close = on_close  # closes the store, after the releases
        self._mutex = threading.RLock()  # (a signal handler may run while this thread holds it)
        self._taken: dict[tuple[str, int], Lease] = {}  # taken without a block, by (mutex, fence)
        self._holds: set[HeldLease] = set()
        self._closing: str | None = None
        self._closed = False
        if at_exit:
            _open.add(self)

    @property
    def closing(self) -> str | None:
        """Why the Service is ending (None while it runs): the reason its releases are recorded with."""
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closing is not None:
            raise ShutdownError(f"the service is shutting down ({self._closing}): it takes no new lease")

    # -- the book -------------------------------------------------------------------------------

    def took(self, lease: Lease) -> Lease:
        with self._mutex:
            self._taken[(lease.mutex_id, lease.fence)] = lease
        return lease

    def renewed(self, lease: Lease) -> Lease:
        with self._mutex:
            if (lease.mutex_id, lease.fence) in self._taken:
                self._taken[(lease.mutex_id, lease.fence)] = lease
        return lease

    def released(self, mutex_id: str, token: int | None, node_id: str) -> None:
        """Forget what a release ended: that fence, or (no token) the node's leases of that mutex."""
        with self._mutex:
            for key, lease in list(self._taken.items()):
                if key[0] == mutex_id and (key[1] == token if token is not None else lease.node_id == node_id):
                    del self._taken[key]

    def add(self, held: HeldLease) -> None:
        with self._mutex:
            self._holds.add(held)

    def discard(self, held: HeldLease) -> None:
        with self._mutex:
            self._holds.discard(held)

    def blocks(self) -> list[HeldLease]:
        """The running ``lock()`` blocks."""
        with self._mutex:
            return list(self._holds)

    def held(self) -> list[Lease]:
        """Every lease this Service holds now: the blocks' and the others."""
        with self._mutex:
            return [*(h.lease for h in self._holds), *self._taken.values()]

    # -- the end --------------------------------------------------------------------------------

    def begin(self, reason: str) -> None:
        """Take no new lease; tell every running block to stop."""
        with self._mutex:
            if self._closing is None:
                self._closing = reason
            holds = list(self._holds)
        for held in holds:
            held._stop(self._closing or reason)

    def close(self, reason: str = SHUTDOWN) -> None:
        """End the Service as the module's rules say; idempotent."""
        if self._closed:
            return
        from .keeper import lease_stop_grace_s

        self.begin(reason)
        me = threading.get_ident()
        started = time.monotonic()
        with self._mutex:
            holds = list(self._holds)
        for held in holds:
            if held.thread == me:  # the block itself closes the Service: its lease ends now
                if held._keeper is not None:
                    held._keeper.stop()
                self._release(held.lease)
                held.released = True  # (leaving the block then does not release it again)
                continue
            left = started + lease_stop_grace_s(held.lease.timeout_ms) - time.monotonic()
            if not held.done_event.wait(max(0.0, left)):
                log.warning("the block holding %s (fence %s) did not stop within its grace: its lease is left "
                            "to run out", held.lease.mutex_id, held.fence)
        for lease in self.take_all():
            self._release(lease)
        self.mark_closed()
        self._on_close()

    def take_all(self) -> list[Lease]:
        """The leases taken without a block, forgotten here (their releases follow)."""
        with self._mutex:
            taken, self._taken = list(self._taken.values()), {}
        return taken

    def mark_closed(self) -> None:
        self._closed = True
        _open.discard(self)

    def _release(self, lease: Lease) -> None:
        drive(self.release_flow(lease), self._leases.store)

    def release_flow(self, lease: Lease) -> Flow[None]:
        """Release ``lease`` at the end, on the record (either executor drives it)."""
        try:
            yield from self._leases.release_flow(lease.mutex_id, token=lease.fence, node_id=lease.node_id,
                                                 kind=lease.kind, reason=self._closing)
        except NotOwnerError:
            pass  # it had ended (expired, broken, released by its token elsewhere)
        except MutexctlError as exc:  # a store that does not answer: the lease runs out by itself
            log.warning("could not release %s (fence %s) at %s: %s", lease.mutex_id, lease.fence, self._closing,
                        exc.message)


def on_signals(lifecycle: Lifecycle, signals: Sequence[int]) -> None:
    """Install the handlers of ``release_on_signals`` (from the main thread only, as Python requires)."""
    if threading.current_thread() is not threading.main_thread():
        raise UsageError("signal handlers can only be installed from the main thread")
    ref = weakref.ref(lifecycle)

    def handler(signum: int, _frame: FrameType | None) -> None:
        current = ref()
        if current is not None:
            current.begin(f"{SHUTDOWN} on {signal.Signals(signum).name}")
        raise SystemExit(128 + signum)

    for signum in signals:
        signal.signal(signum, handler)


@atexit.register
def _close_all() -> None:
    """Best effort at interpreter exit (non-daemon threads have ended by now)."""
    for lifecycle in list(_open):
        try:
            lifecycle.close()
        except Exception:
            log.exception("closing a service at exit failed")
