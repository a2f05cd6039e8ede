"""Keeping a lease while work runs: the renewal thread, and ``hold`` (the library's ``lock()``).

The keeper renews every timeout/3 (at most 5 s apart) and declares the lease lost at its conservative
local deadline — the time the acquire/renew was *sent* plus the timeout, on the lease clock — less a
reserve against clock drift and the time the caller needs to stop its work. Renewals run in
short-lived worker threads, so a renewal stuck on an unreachable store cannot delay that decision.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from .clock import lease_clock
from .errors import LeaseLostError, NotOwnerError, StoreError
from .leases import Leases
from .logs import logger
from .models import EXCLUSIVE, Lease, LeaseRequest

log = logger(__name__)

# Fraction of the timeout kept in reserve against the local clock running slower than the store's.
CLOCK_SAFETY = 0.1
MAX_STOP_GRACE_S = 5.0
# Renewals also detect a forced release; a cap keeps that detection prompt for long leases.
MAX_RENEW_INTERVAL_S = 5.0
# The keeper reads the lease clock at least this often: after a system suspend that outlasted the
# lease, the work is stopped within this long of the resume.
KEEPER_TICK_S = 0.25
# After a failed renewal (store unreachable), the next try comes this soon.
RETRY_S = 0.25
# How long stopping a keeper waits for the history entry of a loss to be written.
RECORD_WAIT_S = 2.0


def lease_stop_grace_s(timeout_ms: int) -> float:
    """How long a stopped command gets between SIGTERM and SIGKILL: a sixth of the lease, at most 5 s."""
    return min(MAX_STOP_GRACE_S, timeout_ms / 6000)


def renew_interval_s(timeout_ms: int) -> float:
    """Renew every timeout/3, and at least every 5 s so a forced release is noticed within seconds."""
    return min(MAX_RENEW_INTERVAL_S, timeout_ms / 3000)


class LeaseKeeper(threading.Thread):
    """Renews a lease every timeout/3 (at most 5 s apart) and calls ``on_lost(reason)`` once if it cannot.

    The deadline is on ``lease_clock()``, checked every KEEPER_TICK_S, so a machine suspend that
    outlasted the lease is caught right after the resume.
    """

    def __init__(self, leases: Leases, lease: Lease, *, on_lost: Callable[[str], None],
                 stop_margin_s: float, on_renewed: Callable[[float], None] | None = None) -> None:
        super().__init__(name=f"mutexctl-keeper-{lease.mutex_id}", daemon=True)
        self.leases = leases
        self.lease = lease
        self.lost_reason: str | None = None
        self.lost_kind: str | None = None  # what ended it: "refused", "outage" or "suspended"
        self._on_lost = on_lost
        self._on_renewed = on_renewed  # told the seconds left until the loss instant, after each renewal
        self._margin = stop_margin_s + CLOCK_SAFETY * lease.timeout_ms / 1000
        self._interval = renew_interval_s(lease.timeout_ms)
        self._wake = threading.Event()
        self._stopping = False
        self._result: Lease | BaseException | None = None
        self._last_error: BaseException | None = None
        self._losing = threading.Lock()
        self._recorder: threading.Thread | None = None

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        recorder = self._recorder  # the loss's history entry: a store that does not answer soon loses it
        if recorder is not None and recorder.is_alive() and not sys.is_finalizing():
            with contextlib.suppress(RuntimeError):
                recorder.join(RECORD_WAIT_S)

    def run(self) -> None:
        next_renewal = lease_clock() + self._interval
        in_flight = False
        while not self._stopping:
            now, lose_at = lease_clock(), self._lose_at()
            if now >= lose_at:
                cause = (f"store unreachable: {self._last_error}" if self._last_error
                         else "no answer from the store, or this machine was suspended")
                self._lose(f"could not renew the lease in time ({cause})", "outage")
                return
            if not in_flight and now >= next_renewal:
                in_flight = True
                threading.Thread(target=self._renew_once, args=(self.lease,), daemon=True).start()
            until = lose_at if in_flight else min(lose_at, next_renewal)
            # Event.wait runs on the monotonic clock, which stands still in a suspend: wake often.
            self._wake.wait(max(0.0, min(KEEPER_TICK_S, until - now)))
            self._wake.clear()
            result, self._result = self._result, None
            if result is None:
                continue
            in_flight = False
            if isinstance(result, Lease):
                self.lease, self._last_error = result, None
                next_renewal = lease_clock() + self._interval
                if self._on_renewed is not None:
                    self._on_renewed(self.time_left())
            elif isinstance(result, NotOwnerError):
                self._lose(f"renewal refused: {result}", "refused")
                return
            else:
                log.debug("renewal of %s failed, retrying: %s", self.lease.mutex_id, result)
                self._last_error = result
                next_renewal = lease_clock() + min(self._interval, RETRY_S)

    def holds(self) -> bool:
        """Whether the lease is still surely ours; called after the process was suspended (Ctrl-Z).

        While mutexctl is stopped nothing renews, so the lease may have run out: then it is declared
        lost here, before the command may run again.
        """
        if self.lost_reason is None and lease_clock() >= self._lose_at():
            self._lose("the job was suspended (Ctrl-Z) until its lease could have expired: it was ended, not resumed",
                       "suspended")
        return self.lost_reason is None

    @property
    def margin_s(self) -> float:
        """How long before its local deadline the lease counts as lost: the stop margin and the
        clock-drift reserve."""
        return self._margin

    def time_left(self) -> float:
        """Seconds until the lease counts as lost (negative: past it)."""
        return self._lose_at() - lease_clock()

    def _lose_at(self) -> float:
        """The lease-clock instant from which the lease counts as lost: its deadline less the margin."""
        return self.lease.local_deadline - self._margin

    def _renew_once(self, lease: Lease) -> None:
        try:
            self._result = self.leases.renew(lease)
        except (NotOwnerError, StoreError) as exc:
            self._result = exc
        except Exception as exc:  # noqa: BLE001 - an unexpected failure counts as "could not renew"
            self._result = StoreError(f"renewal failed: {exc!r}")
        self._wake.set()

    def _lose(self, reason: str, kind: str) -> None:
        with self._losing:  # once, whichever thread notices first
            if self._stopping or self.lost_reason is not None:
                return
            self.lost_reason, self.lost_kind = reason, kind
        log.warning("lease on %s (fence %s) lost: %s", self.lease.mutex_id, self.lease.fence, reason)
        self._on_lost(reason)
        lease = self.lease
        self._recorder = threading.Thread(
            target=self.leases.record, args=(lease.mutex_id, "lost", lease.fence, reason),
            kwargs={"node_id": lease.node_id, "slot": None if lease.kind == EXCLUSIVE else lease.kind},
            name=f"mutexctl-record-{lease.mutex_id}", daemon=True)
        self._recorder.start()


LostCallback = Callable[[str], None]


class HoldRegistry(Protocol):
    """Where a Service keeps its running ``lock()`` blocks, so that its shutdown can stop them (see
    lifecycle.Lifecycle)."""

    @property
    def closing(self) -> str | None: ...

    @property
    def closed(self) -> bool: ...

    def check_open(self) -> None: ...

    def add(self, held: HeldLease) -> None: ...

    def discard(self, held: HeldLease) -> None: ...


class HeldLease:
    """What ``with svc.lock(...) as held`` yields: the current lease, its fence, and two events.

    ``stop_event`` is set when the block's work must stop: the lease is about to be lost, or the
    Service is shutting down. ``lost_event`` is set when the lease is lost. The ``on_lost`` callback
    (of ``lock()``) is called once, with the reason, when ``stop_event`` is first set — at the
    conservative instant exec mode stops its command: early enough that the work can stop before
    the lease could pass to anyone else.
    """

    def __init__(self, lease: Lease, on_lost: LostCallback | None = None) -> None:
        self._first = lease
        self._keeper: LeaseKeeper | None = None
        self._on_lost = on_lost
        self.stop_event = threading.Event()
        self.lost_event = threading.Event()
        self.done_event = threading.Event()  # the block has ended (its lease released or lost)
        self.lost_reason: str | None = None
        self.stop_reason: str | None = None
        self.thread = threading.get_ident()  # the thread that runs the block
        self.released = False  # released before the block ended (the Service was closed from inside it)
        self._telling = threading.RLock()  # (a signal handler may run while this thread holds it)

    @property
    def lease(self) -> Lease:
        return self._keeper.lease if self._keeper is not None else self._first

    @property
    def fence(self) -> int:
        return self._first.fence

    @property
    def lost(self) -> bool:
        return self.lost_event.is_set()

    @property
    def stopping(self) -> bool:
        """Whether the block's work should stop now (loss ahead, or shutdown)."""
        return self.stop_event.is_set()

    def wait_lost(self, timeout: float | None = None) -> bool:
        return self.lost_event.wait(timeout)

    def wait_stopping(self, timeout: float | None = None) -> bool:
        return self.stop_event.wait(timeout)

    def _stop(self, reason: str) -> None:
        """Tell the block to stop (once): the event, then the callback."""
        with self._telling:
            if self.stop_event.is_set():
                return
            self.stop_reason = reason
            self.stop_event.set()
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:  # a failing callback must not stop the keeper from keeping watch
                log.exception("the on_lost callback of the lease on %s failed", self._first.mutex_id)

    def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost_event.set()
        self._stop(reason)


@contextlib.contextmanager
def hold(leases: Leases, request: LeaseRequest, *, give_up: Callable[[], bool] | None = None,
         on_lost: LostCallback | None = None, registry: HoldRegistry | None = None) -> Iterator[HeldLease]:
    """Hold the lease ``request`` asks for (a mutex, one of a semaphore's slots, or a shared hold) for
    the block, renewing it every timeout/3 in a background thread.

    If renewal is refused or the store stays unreachable, the lease counts as lost a stop grace
    (lease_stop_grace_s) and a clock reserve before it could expire: ``held.lost`` turns true and
    ``on_lost`` is called; leaving the block then raises LeaseLostError. With a ``registry`` (the
    Service's), no lease is taken once it is closing, and its shutdown can tell the block to stop.
    """
    if registry is not None:
        registry.check_open()
    lease = leases.acquire(request, give_up=give_up)
    held = HeldLease(lease, on_lost)
    keeper = LeaseKeeper(leases, lease, on_lost=held._mark_lost, stop_margin_s=lease_stop_grace_s(lease.timeout_ms))
    held._keeper = keeper
    keeper.start()
    if registry is not None:
        registry.add(held)
    try:
        yield held
    finally:
        keeper.stop()
        if registry is not None:
            registry.discard(held)
        try:
            # (closed: the store is gone, and the lease runs out by itself, after this block)
            if not held.lost and not held.released and not (registry is not None and registry.closed):
                reason = registry.closing if registry is not None else None
                with contextlib.suppress(NotOwnerError):
                    leases.release(request.mutex_id, token=keeper.lease.fence, kind=lease.kind, reason=reason)
        finally:
            held.done_event.set()
    if held.lost:
        raise LeaseLostError(f"lease on '{request.mutex_id}' was lost while the block ran: {held.lost_reason}")
