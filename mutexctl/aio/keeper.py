"""``async with svc.lock(...)``: a lease held for a block, renewed by a task, and the block's task
cancelled at the loss instant — the keeper's rules (keeper: renewal interval, retry, tick, the
stop grace and clock reserve before the lease's end) on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING

from ..clock import lease_clock
from ..errors import LeaseLostError, NotOwnerError
from ..keeper import (
    CLOCK_SAFETY,
    KEEPER_TICK_S,
    RETRY_S,
    HeldLease,
    LostCallback,
    lease_stop_grace_s,
    renew_interval_s,
)
from ..logs import logger
from ..models import EXCLUSIVE, Lease, LeaseRequest
from .store import AsyncStore, adrive

if TYPE_CHECKING:
    from ..leases import Leases
    from ..lifecycle import Lifecycle

log = logger(__name__)
_LOST = "mutexctl: lease lost"  # the message of the cancellation a loss sends the block's task


class AsyncHeldLease(HeldLease):
    """What ``async with svc.lock(...) as held`` yields: as HeldLease (``lease``, ``fence``, ``lost``,
    ``stopping``, the reasons), with ``stopped``/``lost_now`` to await. Told to stop (loss ahead,
    or shutdown) it calls ``on_lost`` and cancels the block's task."""

    def __init__(self, lease: Lease, on_lost: LostCallback | None, task: asyncio.Task[object] | None) -> None:
        super().__init__(lease, on_lost)
        self.thread = -1  # (not a thread's block: a shutdown never releases it from under the task)
        self._task = task
        self._current = lease
        self.stopped = asyncio.Event()
        self.lost_now = asyncio.Event()
        self.ended = asyncio.Event()  # the block has ended
        self.cancelled_by_us = False

    @property
    def lease(self) -> Lease:
        return self._current

    def _stop(self, reason: str) -> None:
        first = not self.stop_event.is_set()
        super()._stop(reason)
        if first:
            self.stopped.set()
            if self._task is not None and not self._task.done():
                self.cancelled_by_us = True
                self._task.cancel(_LOST)

    def _mark_lost(self, reason: str) -> None:
        self.lost_now.set()
        super()._mark_lost(reason)


class AsyncLock:
    """The async context manager ``AsyncService.lock`` returns."""

    def __init__(self, leases: Leases, store: AsyncStore, request: LeaseRequest, book: Lifecycle,
                 on_lost: LostCallback | None) -> None:
        self._leases, self._store, self._request, self._book, self._on_lost = leases, store, request, book, on_lost
        self._held: AsyncHeldLease | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncHeldLease:
        self._book.check_open()
        flow = self._leases.acquire_flow(self._request, give_up=lambda: self._book.closing is not None)
        lease = await adrive(flow, self._store)
        held = self._held = AsyncHeldLease(lease, self._on_lost, asyncio.current_task())
        self._keeper = asyncio.create_task(_keep(self._leases, self._store, held),
                                           name=f"mutexctl-keeper-{lease.mutex_id}")
        self._book.add(held)
        return held

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        _tb: TracebackType | None) -> bool:
        held, keeper = self._held, self._keeper
        assert held is not None and keeper is not None
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        self._book.discard(held)
        try:
            if not held.lost and not self._book.closed:
                with contextlib.suppress(NotOwnerError):
                    flow = self._leases.release_flow(self._request.mutex_id, token=held.lease.fence,
                                                     kind=held.lease.kind, reason=self._book.closing)
                    await adrive(flow, self._store)
        finally:
            held.ended.set()
            held.done_event.set()
        task = asyncio.current_task()
        if held.lost:
            if kind is asyncio.CancelledError and held.cancelled_by_us and task is not None:
                task.uncancel()  # our cancellation: the block ends with the loss instead
            raise LeaseLostError(f"lease on '{self._request.mutex_id}' was lost while the block ran: "
                                 f"{held.lost_reason}") from error
        return False


async def _keep(leases: Leases, store: AsyncStore, held: AsyncHeldLease) -> None:
    """Renew every timeout/3 (at most 5 s apart), a renewal in a task of its own so that one stuck
    on an unreachable store cannot delay the loss: declared a stop grace and a clock reserve before
    the lease's conservative end (as the thread keeper does)."""
    lease = held.lease
    margin = lease_stop_grace_s(lease.timeout_ms) + CLOCK_SAFETY * lease.timeout_ms / 1000
    interval = renew_interval_s(lease.timeout_ms)
    next_renewal = lease_clock() + interval
    renewal: asyncio.Task[Lease] | None = None
    last_error: BaseException | None = None
    try:
        while True:
            now, lose_at = lease_clock(), held.lease.local_deadline - margin
            if now >= lose_at:
                cause = f"store unreachable: {last_error}" if last_error else "no answer from the store"
                _lose(leases, store, held, f"could not renew the lease in time ({cause})")
                return
            if renewal is None and now >= next_renewal:
                renewal = asyncio.create_task(adrive(leases.renew_flow(held.lease), store))
            until = lose_at if renewal is not None else min(lose_at, next_renewal)
            pause = max(0.0, min(KEEPER_TICK_S, until - now))
            if renewal is not None:
                await asyncio.wait({renewal}, timeout=pause)
            else:
                await asyncio.sleep(pause)
            if renewal is None or not renewal.done():
                continue
            done, renewal = renewal, None
            try:
                held._current, last_error = done.result(), None
                next_renewal = lease_clock() + interval
            except NotOwnerError as refused:
                _lose(leases, store, held, f"renewal refused: {refused}")
                return
            except Exception as exc:  # noqa: BLE001 - counts as "could not renew": retried, then the loss
                log.debug("renewal of %s failed, retrying: %s", lease.mutex_id, exc)
                last_error = exc
                next_renewal = lease_clock() + min(interval, RETRY_S)
    finally:
        if renewal is not None:
            renewal.cancel()


def _lose(leases: Leases, store: AsyncStore, held: AsyncHeldLease, reason: str) -> None:
    log.warning("lease on %s (fence %s) lost: %s", held.lease.mutex_id, held.fence, reason)
    held._mark_lost(reason)
    lease = held.lease
    flow = leases.record_flow(lease.mutex_id, "lost", lease.fence, reason, node_id=lease.node_id,
                              slot=None if lease.kind == EXCLUSIVE else lease.kind)
    _background(asyncio.ensure_future(adrive(flow, store)))


_TASKS: set[asyncio.Future[object]] = set()  # background writes, kept until done


def _background(task: asyncio.Future[object]) -> None:
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)

