"""An asyncio service holding a lease in ``async with svc.lock(...)`` until a signal ends it.

Usage: aio_service.py STORE_URL NODE OUT — prints "ready" once held; the block's cancellation and
its on_lost callback are appended to OUT.
"""

import asyncio
import sys
from pathlib import Path

import mutexctl.aio

store, node, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def note(text: str) -> None:
    with out.open("a") as f:
        f.write(text + "\n")


async def main() -> None:
    async with await mutexctl.aio.connect(store=store, node_id=node, release_on_signals=True) as svc:
        assert await svc.P("p", node, 60000)
        async with svc.lock("b", timeout="60s", on_lost=lambda reason: note(f"told: {reason}")):
            print("ready", flush=True)
            try:
                await asyncio.Event().wait()  # the work
            except asyncio.CancelledError:
                note("cancelled")
                raise


asyncio.run(main())
