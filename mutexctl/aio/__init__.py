"""mutexctl for asyncio: ``svc = await mutexctl.aio.connect()`` gives an AsyncService, whose calls
never block the event loop (native asynchronous I/O on MongoDB, a worker thread on SQLite) and run
the same lease rules as the synchronous Service (see flows)."""

from __future__ import annotations

from .keeper import AsyncHeldLease, AsyncLock
from .service import AsyncService, connect

__all__ = ["AsyncHeldLease", "AsyncLock", "AsyncService", "connect"]
