"""The store for an event loop, and the executor of the lease flows on it (see flows).

MongoDB: each store operation through PyMongo's asynchronous client (stores.mongodb.aio). SQLite: the
store's own methods in a worker thread — its statements take microseconds, and the file is opened
in a thread too. Either way the loop never waits on I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..flows import Call, Flow, Handed, LoopEnded, Nap

if TYPE_CHECKING:
    from ..config import Settings
    from ..stores.protocols import Store

T = TypeVar("T")


class AsyncStore(Protocol):
    @property
    def store(self) -> Store: ...

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def close(self) -> None: ...


# What keeps a lease or ends one: these never queue behind other tasks' polls (a renewal that waits
# for a free worker while 50 waiters poll could come too late).
URGENT = frozenset({"renew", "renew_slot", "release", "release_slot", "record_event"})


class ThreadStore:
    """A store whose methods run in worker threads (SQLite): the loop's default pool, and a thread of
    their own for the URGENT ones."""

    def __init__(self, store: Store) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.store = store
        self._urgent = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mutexctl-urgent")

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import functools

        work = functools.partial(getattr(self.store, method), *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._urgent if method in URGENT else None, work)

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)
        self._urgent.shutdown(wait=False)


async def open_async_store(settings: Settings, store: Store) -> AsyncStore:
    """The event loop's access to ``store`` (opened on ``settings``): native on MongoDB."""
    scheme = settings.store.split(":", 1)[0].lower()
    if scheme in ("mongodb", "mongodb+srv"):
        from ..stores.mongodb.aio import AsyncMongo  # (pymongo only for a MongoDB URL)
        from ..stores.mongodb.base import MongoBase

        assert isinstance(store, MongoBase)
        mongo = AsyncMongo(store, settings.store, connect_timeout_ms=settings.connect_timeout_ms)
        return _Native(mongo, store)
    return ThreadStore(store)


class _Native:
    """An asynchronous MongoDB executor as an AsyncStore (its ``store`` seen as the whole Store)."""

    def __init__(self, executor: Any, store: Store) -> None:
        self._executor, self._store = executor, store

    @property
    def store(self) -> Store:
        return self._store

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._executor.call(method, *args, **kwargs)

    async def close(self) -> None:
        await self._executor.close()


async def adrive(flow: Flow[T], store: AsyncStore, *, throw: BaseException | None = None) -> T:
    """``flows.drive`` for an event loop: each call awaited on ``store``, each nap on the loop (a
    doorbell's ring ends it early); a cancellation is thrown into the flow like any error, so a
    waiter leaves its queue before the task ends."""
    reply: Any = None
    error = throw
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        try:
            reply = await _do(step, store)
        except BaseException as exc:  # noqa: BLE001 - handed to the flow, which re-raises what it does not take
            error = exc


async def ahand(flow: Flow[None], store: AsyncStore) -> AsyncGenerator[Any, Any]:
    """``flows.drive_handing`` for an event loop: an asynchronous generator of the values the flow
    hands out (``asend`` answers one); closed, the flow finishes where it handed the last one."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration:
            return
        reply, error = None, None
        if isinstance(step, Handed):
            try:
                reply = yield step.value
            except GeneratorExit:
                with contextlib.suppress(LoopEnded):
                    await adrive(flow, store, throw=LoopEnded())
                raise
            continue
        try:
            reply = await _do(step, store)
        except BaseException as exc:  # noqa: BLE001 - as in adrive
            error = exc


async def _do(step: Call | Nap | Handed, store: AsyncStore) -> Any:
    if isinstance(step, Nap):
        if step.bell is not None:
            return await step.bell.asleep(step.seconds)
        await asyncio.sleep(max(0.0, step.seconds))
        return False
    if isinstance(step, Handed):
        raise TypeError("this flow hands values out: drive it with ahand")
    return await store.call(step.method, *step.args, **step.kwargs)


class LoopBell:
    """An asyncio.Event as a nap's bell and a listen's stop."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def is_set(self) -> bool:
        return self.event.is_set()

    def sleep(self, seconds: float) -> bool:
        raise TypeError("an asyncio.Event is awaited, not waited for")

    async def asleep(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), max(0.0, seconds))
        except TimeoutError:
            return False
        return True
