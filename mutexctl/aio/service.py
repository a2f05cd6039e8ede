"""``AsyncService``: the Service's surface for asyncio, on the same rules (the lease flows, the
lifecycle's book) and never blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..config import Settings, load_settings
from ..errors import LockHeldError, NotOwnerError, UsageError
from ..inputs import validate_mutex_id
from ..keeper import lease_stop_grace_s
from ..leases import Leases
from ..lifecycle import SHUTDOWN, Lifecycle
from ..logs import logger
from ..models import (
    DEFAULT_CHANNEL,
    SERVICE,
    AckReport,
    InitResult,
    Lease,
    LeaseEvent,
    Message,
    MutexState,
    NodeInfo,
    OnceMarker,
    Overview,
)
from ..requests import Duration, duration_ms, validate_value, wait_seconds
from ..stores import open_store
from ..waiting import WaitAbandoned, WaitCallback
from .keeper import AsyncHeldLease, AsyncLock
from .store import AsyncStore, LoopBell, adrive, ahand, open_async_store

if TYPE_CHECKING:
    from ..election import Leader
    from ..intracom import Intracom
    from ..keeper import LostCallback
    from ..stores.protocols import Store

log = logger(__name__)


async def connect(config: str | None = None, *, store: str | None = None, node_id: str | None = None,
                  release_on_signals: bool = False) -> AsyncService:
    """``mutexctl.connect`` for asyncio: the settings read and the store opened off the loop."""
    settings = await asyncio.to_thread(load_settings, config=config, store=store, node_id=node_id)
    service = await AsyncService.open(settings)
    if release_on_signals:
        service.release_on_signals()
    return service


class AsyncService:
    """Mutexes on one store for one node, for coroutines. Its life is the Service's (see lifecycle):
    ``await close()`` (or leaving ``async with``) cancels the running ``lock()`` blocks, waits for
    them within their stop grace, and releases every lease it holds, on the record."""

    def __init__(self, settings: Settings, store: AsyncStore) -> None:
        self.settings = settings
        self._store = store
        self.store = store.store
        self.leases = Leases(self.store, settings, via=SERVICE)
        self.lifecycle = Lifecycle(self.leases, on_close=lambda: None, at_exit=False)
        self._taken: dict[str, tuple[str, int]] = {}  # what P() took, so V() releases exactly that lease
        self._signalled: int | None = None
        self._intracom: Intracom | None = None
        self._main: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, settings: Settings) -> AsyncService:
        store = await asyncio.to_thread(_open, settings)
        return cls(settings, await open_async_store(settings, store))

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    # -- the seed's interface -------------------------------------------------------------------

    async def P(self, mutex_id: str, node_id: str, timeout_ms: int) -> bool:  # noqa: N802 - the seed's names
        """Try once to take ``mutex_id`` for ``node_id`` for ``timeout_ms``; True if taken."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise UsageError(f"timeout_ms must be a positive integer, not {timeout_ms!r}")
        self.lifecycle.check_open()
        request = self.leases.request(mutex_id, timeout=timedelta(milliseconds=timeout_ms), node_id=node_id)
        try:
            lease = await adrive(self.leases.take_flow(request, explain=False), self._store)
        except LockHeldError:
            return False
        self._taken[mutex_id] = (node_id, lease.fence)
        self.lifecycle.took(lease)
        return True

    async def V(self, mutex_id: str) -> bool:  # noqa: N802 - the seed's names
        """Release what P() took; False if the lease was no longer ours."""
        node_id, fence = self._taken.pop(mutex_id, (self.node_id, None))
        try:
            await self.release(mutex_id, token=fence, node_id=node_id)
        except NotOwnerError:
            return False
        return True

    # -- leases -----------------------------------------------------------------------------------

    async def try_acquire(self, mutex_id: str, *, timeout: Duration | None = None, node_id: str | None = None,
                          limit: int | None = None, shared: bool = False) -> Lease:
        request = self.leases.request(mutex_id, timeout=timeout, node_id=node_id, limit=limit, shared=shared)
        self.lifecycle.check_open()
        return self.lifecycle.took(await adrive(self.leases.take_flow(request), self._store))

    async def acquire(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
                      node_id: str | None = None, on_wait: WaitCallback | None = None, limit: int | None = None,
                      shared: bool = False) -> Lease:
        """Take the mutex, waiting up to ``wait``; cancelling the awaiting task leaves the queue."""
        request = self.leases.request(mutex_id, timeout=timeout, wait=wait, node_id=node_id, limit=limit,
                                      shared=shared)
        self.lifecycle.check_open()
        flow = self.leases.acquire_flow(request, on_wait=on_wait, give_up=lambda: self.lifecycle.closing is not None)
        try:
            return self.lifecycle.took(await adrive(flow, self._store))
        except WaitAbandoned:
            self.lifecycle.check_open()  # (what ended the wait)
            raise

    async def renew(self, lease: Lease) -> Lease:
        return self.lifecycle.renewed(await adrive(self.leases.renew_flow(lease), self._store))

    async def renew_token(self, mutex_id: str, token: int, *, timeout: Duration | None = None) -> Lease:
        flow = self.leases.renew_token_flow(mutex_id, token, timeout=timeout)
        return self.lifecycle.renewed(await adrive(flow, self._store))

    async def release(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None) -> None:
        try:
            await adrive(self.leases.release_flow(mutex_id, token=token, node_id=node_id), self._store)
        finally:
            self.lifecycle.released(mutex_id, token, node_id or self.node_id)

    async def force_release(self, mutex_id: str, *, reason: str, node: str | None = None,
                            fence: int | None = None) -> MutexState | None:
        return await adrive(self.leases.force_release_flow(mutex_id, reason=reason, node=node, fence=fence),
                            self._store)

    def lock(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
             limit: int | None = None, shared: bool = False, on_lost: LostCallback | None = None) -> AsyncLock:
        """``async with svc.lock(name) as held:`` hold the mutex for the block, renewed by a task. At
        the loss instant (early enough to stop before the lease could pass on) ``on_lost`` is called
        and the block's task is cancelled; the block then raises LeaseLostError. A shutdown cancels it
        too (the CancelledError stands)."""
        request = self.leases.request(mutex_id, timeout=timeout, wait=wait, limit=limit, shared=shared)
        return AsyncLock(self.leases, self._store, request, self.lifecycle, on_lost)

    def elect(self, name: str, *, value: str = "", timeout: Duration | None = None, wait: Duration | None = "inf",
              on_lost: LostCallback | None = None) -> AbstractAsyncContextManager[AsyncHeldLease]:
        """``async with svc.elect(name, value=…) as held:`` lead for the block (see Service.elect): wait in
        line, announce ``value`` for the term ``held.fence``, keep it renewed by a task; deposed, the
        block's task is cancelled before the next term can begin (LeaseLostError); leaving resigns."""
        from ..election import announce_flow

        checked = validate_value(value)

        @contextlib.asynccontextmanager
        async def leading() -> AsyncGenerator[AsyncHeldLease, None]:
            async with self.lock(name, timeout=timeout, wait=wait, on_lost=on_lost) as held:
                await adrive(announce_flow(held.lease, checked), self._store)
                yield held

        return leading()

    async def leader(self, name: str) -> Leader | None:
        """The leader of election ``name`` now, or None."""
        from ..election import leader_flow

        return await adrive(leader_flow(validate_mutex_id(name)), self._store)

    def observe(self, name: str, *, interval: Duration | None = None) -> AsyncGenerator[Leader | None, Any]:
        """``async for leader in svc.observe(name):`` the leader now, then at each change, in term order."""
        from ..election import observe_flow

        interval_s = self.settings.poll_interval_s if interval is None else duration_ms(interval, "interval") / 1000
        return ahand(observe_flow(validate_mutex_id(name), interval_s), self._store)

    def held(self) -> list[Lease]:
        return self.lifecycle.held()

    # -- reads ----------------------------------------------------------------------------------

    async def status(self, mutex_id: str | None = None) -> list[MutexState]:
        view = await adrive(self.leases.overview_flow(mutex_id, forced_limit=0), self._store)
        return list(view.states)

    async def overview(self, mutex_id: str | None = None, *, patterns: Sequence[str] = (), held_only: bool = False,
                       forced_limit: int = 5, recent: int = 0) -> Overview:
        flow = self.leases.overview_flow(mutex_id, patterns=patterns, held_only=held_only,
                                         forced_limit=forced_limit, recent=recent)
        return await adrive(flow, self._store)

    async def history(self, patterns: Sequence[str] = (), *, since: Duration | None = None, node: str | None = None,
                      limit: int = 100) -> list[LeaseEvent]:
        from .. import history

        since_s = None if since is None else wait_seconds(since, "since")
        return await asyncio.to_thread(history.read, self.store, patterns,
                                       since_s=None if since_s == float("inf") else since_s, node=node, limit=limit)

    async def run_once(self, mutex_id: str, key: str, work: Callable[[AsyncHeldLease], Awaitable[object]], *,
                       timeout: Duration | None = None, wait: Duration | None = "inf") -> OnceMarker:
        """Service.run_once for coroutines: ``await work(held)`` once for (``mutex_id``, ``key``) among
        every instance; the others wait and return the marker of the one that ran it."""
        marker = await adrive(self.leases.once_done_flow(mutex_id, key), self._store)
        if marker is not None:
            return marker
        request = self.leases.request(mutex_id, timeout=timeout, wait=wait)
        try:
            async with AsyncLock(self.leases, self._store, request, self.lifecycle, None) as held:
                marker = await adrive(self.leases.once_done_flow(mutex_id, key), self._store)
                if marker is None:
                    await work(held)
                    if not held.lost:
                        marker = await adrive(self.leases.mark_once_flow(held.lease, key), self._store)
        except WaitAbandoned:
            marker = await adrive(self.leases.once_done_flow(mutex_id, key), self._store)
            if marker is None:
                self.lifecycle.check_open()
        assert marker is not None  # marked here or by another instance
        return marker

    async def init_schema(self, *, wait: Duration | None = None, timeout: Duration | None = None,
                          dry_run: bool = False) -> InitResult:
        """Service.init_schema, in a worker thread (a deploy step, run once: its index builds wait on
        the server, not on the loop)."""
        from ..schema.initialize import initialize

        return await asyncio.to_thread(initialize, self.store, self.leases, wait=wait, timeout=timeout,
                                       dry_run=dry_run)

    # -- intracom ---------------------------------------------------------------------------------

    @property
    def intracom(self) -> Intracom:
        if self._intracom is None:
            from ..intracom import Intracom

            self._intracom = Intracom(self.store, self.settings)
        return self._intracom

    async def broadcast(self, action: str, payload: object = "{}", *, channel: str = DEFAULT_CHANNEL,
                        to: Sequence[str] = (), require_listeners: bool = False) -> Message:
        flow = self.intracom.broadcast_flow(action, payload, channel=channel, to=to,
                                            require_listeners=require_listeners)
        return await adrive(flow, self._store)

    async def nodes(self, channel: str | None = None) -> tuple[datetime, list[NodeInfo]]:
        return await adrive(self.intracom.nodes_flow(channel), self._store)

    async def ack_report(self, message_id: str) -> AckReport:
        return await adrive(self.intracom.ack_report_flow(message_id), self._store)

    async def wait_acks(self, message: Message, *, wait: Duration,
                        on_progress: Callable[[AckReport], None] | None = None) -> AckReport:
        flow = self.intracom.wait_acks_flow(message, wait_s=wait_seconds(wait, "wait"), on_progress=on_progress)
        return await adrive(flow, self._store)

    def listen(self, *, channel: str = DEFAULT_CHANNEL, include_self: bool = False, from_start: bool = False,
               once: bool = False, stop: asyncio.Event | None = None) -> AsyncGenerator[Message, int | None]:
        """``async for message in svc.listen():`` each message meant for this node; it is acked with
        status 0 when the next is asked for or when the loop ends (break, ``aclose()``, garbage
        collection), with another status by ``asend(status)``. Ends when ``stop`` is set (or, with
        ``once``, when the log is drained)."""
        flow = self.intracom.listen_flow(channel=channel, include_self=include_self, from_start=from_start,
                                         once=once, stop=LoopBell(stop or asyncio.Event()))
        return ahand(flow, self._store)

    async def handle(self, handler: Callable[[Message], Awaitable[int] | int], *, channel: str = DEFAULT_CHANNEL,
                     include_self: bool = False, from_start: bool = False, once: bool = False,
                     stop: asyncio.Event | None = None) -> int:
        """Run ``handler`` (a coroutine function or a plain one; message -> status, an exception
        counts as 1) on each message until ``stop`` is set; how many it handled."""
        messages = self.listen(channel=channel, include_self=include_self, from_start=from_start, once=once,
                                     stop=stop)
        handled = 0
        try:
            message = await anext(messages)
            while True:
                try:
                    status = handler(message)
                    if inspect.isawaitable(status):
                        status = await status
                except Exception:
                    log.exception("handler failed on %s", message.id)
                    status = 1
                handled += 1
                message = await messages.asend(int(status))
        except StopAsyncIteration:
            return handled
        finally:
            await messages.aclose()

    # -- the end ----------------------------------------------------------------------------------

    def release_on_signals(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """On any of ``signals``: take no new lease, cancel every running ``lock()`` block and the task
        that called this (``asyncio.run``'s main, typically); leaving ``async with`` the service then
        releases the rest and raises SystemExit(128+N), the status a shell gives signal N."""
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        for signum in signals:
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        self._signalled = signum
        self.lifecycle.begin(f"{SHUTDOWN} on {signal.Signals(signum).name}")
        if self._main is not None and not self._main.done():
            self._main.cancel()

    async def close(self) -> None:
        """As Service.close: blocks told to stop (cancelled) and given their stop grace, then every
        other lease released on the record; idempotent."""
        book = self.lifecycle
        if book.closed:
            return
        book.begin(SHUTDOWN)
        blocks = [h for h in book.blocks() if isinstance(h, AsyncHeldLease)]
        for held in blocks:
            try:
                await asyncio.wait_for(held.ended.wait(), lease_stop_grace_s(held.lease.timeout_ms))
            except TimeoutError:
                log.warning("the block holding %s (fence %s) did not stop within its grace: its lease is left to "
                            "run out", held.lease.mutex_id, held.fence)
        for lease in book.take_all():
            await adrive(book.release_flow(lease), self._store)
        book.mark_closed()
        await asyncio.to_thread(self.leases.recorder.flush)
        await self._store.close()
        await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> AsyncService:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        await asyncio.shield(self.close())
        if self._signalled is not None and kind is asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise SystemExit(128 + self._signalled)


def _open(settings: Settings) -> Store:
    """Open the store, and pay off the loop what the first lease, wait and broadcast would import
    (tens of milliseconds the loop would otherwise stand still for)."""
    import random  # noqa: F401 - a waiter's backoff
    import select  # noqa: F401 - a waiter's doorbell
    import socket  # noqa: F401
    import uuid  # noqa: F401 - a waiter's queue token

    from .. import history, intracom  # noqa: F401
    from ..requests import this_process

    this_process()  # (the holder stamp, built once per process)
    return open_store(settings)


__all__ = ["AsyncHeldLease", "AsyncService", "connect"]
