"""Benchmark (on demand): event-loop lag while 50 tasks use mutexctl.aio, on each store.

    .venv/bin/python benchmarks/bench_loop_lag.py [--seconds 5] [--no-mongodb]

A 1 ms ticker measures how late the loop wakes it while 50 tasks wait for, hold, renew and release
leases: 20 contend in ``async with svc.lock()`` on 4 mutexes (1 s leases renewed every 333 ms,
400 ms sections), 20 loop on P/V, 9 listen for the broadcasts a tenth sends. The same ticker beside
50 tasks that only sleep is the floor. Targets: p99 lag <= 5 ms, max <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from mongo_server import MongoServer, with_database  # noqa: E402
from mutexctl import LeaseLostError, LockHeldError, Settings, WaitTimeoutError  # noqa: E402
from mutexctl.aio import AsyncService  # noqa: E402

TASKS = 50


async def lags_during(work: Awaitable[object], tick_s: float = 0.001) -> list[float]:
    """How late (s) each 1 ms tick of a ticker woke while ``work`` ran."""
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(tick_s)
            lags.append(max(0.0, time.perf_counter() - before - tick_s))

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker's first tick is set before the work's first step runs
    try:
        await work
    finally:
        done = True
        await ticking
    return lags


def summary(lags: list[float]) -> tuple[float, float]:
    """(p99, max) in ms."""
    ordered = sorted(lags) or [0.0]
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, ordered[-1] * 1000


async def idle_load(seconds: float) -> None:
    async def sleeper() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(random.uniform(0.005, 0.05))

    await asyncio.gather(*(sleeper() for _ in range(TASKS)))


async def mutexctl_load(services: list[AsyncService], seconds: float, counts: dict[str, int]) -> None:
    """The 50 tasks, for ``seconds`` (the services are opened before and closed after the measurement)."""
    end = time.monotonic() + seconds
    stop = asyncio.Event()

    async def locker(svc: AsyncService, i: int) -> None:
        while time.monotonic() < end:
            try:
                async with svc.lock(f"lock-{i % 4}", timeout="1s", wait="5s"):
                    await asyncio.sleep(0.4)  # past a renewal interval (333 ms)
                    counts["sections"] += 1
            except WaitTimeoutError:
                pass
            except LeaseLostError:
                counts["lost"] += 1

    async def pv(svc: AsyncService, i: int) -> None:
        while time.monotonic() < end:
            try:
                if await svc.P(f"pv-{i % 5}", svc.node_id, 500):
                    await asyncio.sleep(0.01)
                    await svc.V(f"pv-{i % 5}")
                    counts["pv"] += 1
            except LockHeldError:
                pass
            await asyncio.sleep(random.uniform(0.005, 0.02))

    async def listener(svc: AsyncService) -> None:
        async for _ in svc.listen(stop=stop):
            counts["messages"] += 1

    async def sender(svc: AsyncService) -> None:
        while time.monotonic() < end:
            await svc.broadcast("tick", {"at": time.time()})
            await asyncio.sleep(0.2)
        stop.set()

    async def staggered(work: Awaitable[None]) -> None:
        # Tasks start within 200 ms, not all in one loop iteration: 50 first steps (each builds and
        # sends its first command, ~1 ms of Python) queued at one instant would be one 50 ms turn.
        await asyncio.sleep(random.uniform(0, 0.2))
        await work

    await asyncio.gather(*(staggered(locker(services[i], i)) for i in range(20)),
                         *(staggered(pv(services[i], i)) for i in range(20, 40)),
                         *(staggered(listener(services[i])) for i in range(40, 49)), sender(services[49]))


def report(label: str, store_url: str, seconds: float) -> None:
    floor = summary(asyncio.run(lags_during(idle_load(seconds))))
    counts = {"sections": 0, "lost": 0, "pv": 0, "messages": 0}

    async def measured() -> list[float]:
        services = [await AsyncService.open(Settings(node_id=f"n{i}", store=store_url)) for i in range(TASKS)]
        await services[0].init_schema()
        for svc in services:  # connected and warm: the measurement is of the work, not of start-up
            await svc.status("warm-up")
            await svc.nodes()
        try:
            return await lags_during(mutexctl_load(services, seconds, counts))
        finally:
            for svc in services:
                await svc.close()

    p99, worst = summary(asyncio.run(measured()))
    print(f"{label}: loop lag p99 {p99:.2f} ms (target <= 5), max {worst:.2f} ms (target <= 20); "
          f"floor p99 {floor[0]:.2f} ms, max {floor[1]:.2f} ms; ratio p99 {p99 / max(floor[0], 0.01):.1f}x; "
          f"work done: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-mongodb", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    try:
        report("SQLite", f"sqlite://{work / 'l.db'}", args.seconds)
        if not args.no_mongodb:
            server = MongoServer()
            try:
                report("MongoDB (mongoeco)", with_database(server.start(), "bench"), args.seconds)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


Measure = Callable[[Awaitable[object]], Awaitable[list[float]]]

if __name__ == "__main__":
    main()
