"""The asyncio API on a real event loop: the same leases as the Service, a loop that never waits on
the store, blocks cancelled at the loss instant, and a service's end (close, SIGTERM) on the record."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest
from mutexctl import LeaseLostError, LockHeldError, Service, Settings, ShutdownError
from mutexctl.aio import AsyncService, connect

from ..conftest import BUSY_S, HELPERS, wait_until


def _run(store_url: str, body: Callable[[AsyncService], Awaitable[None]], node: str = "aio") -> None:
    async def main() -> None:
        async with await connect(store=store_url, node_id=node) as svc:
            await body(svc)

    asyncio.run(main())


def _releases(service: Service, name: str) -> list[str | None]:
    return [e.reason for e in service.history([name]) if e.kind == "release"]


def test_the_seed_interface_and_leases_work_as_on_the_service(store_url: str) -> None:
    other = Service(Settings(node_id="other", store=store_url))

    async def body(svc: AsyncService) -> None:
        assert await svc.P("seed", "aio", 60000)
        assert not await svc.P("seed", "aio2", 60000)
        assert other.status("seed")[0].taken_by == "aio"
        assert await svc.V("seed") and not other.status("seed")[0].taken
        lease = await svc.try_acquire("job", timeout="1m")
        with pytest.raises(LockHeldError):
            other.try_acquire("job")
        renewed = await svc.renew(lease)
        assert renewed.fence == lease.fence
        await svc.release("job", token=lease.fence)
        slot = await svc.try_acquire("sem", timeout="1m", limit=2)
        assert [s.fence for s in (await svc.status("sem"))[0].slots] == [slot.fence]
        await svc.release("sem", token=slot.fence)
        assert sorted(s.mutex_id for s in (await svc.overview()).states) == ["job", "seed", "sem"]

    _run(store_url, body)
    other.close()


def test_a_waiting_acquire_never_blocks_the_loop_and_gets_the_lease_at_the_release(store_url: str) -> None:
    holder = Service(Settings(node_id="holder", store=store_url))
    holder.try_acquire("job", timeout="1m")
    threading.Timer(1.0, holder.release, args=("job",)).start()

    async def body(svc: AsyncService) -> None:
        got: list[float] = []

        async def wait() -> None:
            await svc.acquire("job", timeout="10s", wait=f"{30 * BUSY_S}s")
            got.append(time.monotonic())

        started = time.monotonic()
        bench = _bench()
        _, worst_ms = bench.summary(await bench.lags_during(wait()))
        assert got and got[0] - started >= 0.9  # it waited for the release
        assert worst_ms < 200 * BUSY_S, worst_ms  # the synchronous lock() stalls the loop for the whole wait

    _run(store_url, body)
    holder.close()


def test_cancelling_a_waiting_acquire_leaves_the_queue(store_url: str) -> None:
    holder = Service(Settings(node_id="holder", store=store_url))
    holder.try_acquire("job", timeout="1m")

    async def body(svc: AsyncService) -> None:
        waiting = asyncio.create_task(svc.acquire("job", wait="1h"))
        for _ in range(int(100 * BUSY_S)):
            await asyncio.sleep(0.05)
            if holder.status("job")[0].waiters:
                break
        assert holder.status("job")[0].waiters
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not holder.status("job")[0].waiters

    _run(store_url, body)
    holder.close()


def test_a_lock_is_renewed_and_a_lost_one_cancels_its_block(store_url: str) -> None:
    other = Service(Settings(node_id="other", store=store_url))
    told: list[str] = []

    async def body(svc: AsyncService) -> None:
        async with svc.lock("job", timeout="900ms") as held:
            await asyncio.sleep(2.7)  # three times its timeout
            assert not held.lost and other.status("job")[0].taken_by == "aio"
        assert not other.status("job")[0].taken
        reached_end = False
        with pytest.raises(LeaseLostError):
            async with svc.lock("job", timeout="900ms", on_lost=told.append):
                other.force_release("job", reason="test")
                await asyncio.sleep(30 * BUSY_S)  # cancelled at the loss, long before this ends
                reached_end = True
        assert not reached_end and len(told) == 1 and "renewal refused" in told[0]
        assert asyncio.current_task() is not None and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    _run(store_url, body)
    other.close()


def test_close_cancels_blocks_and_releases_everything_on_the_record(store_url: str) -> None:
    other = Service(Settings(node_id="other", store=store_url))

    async def body(svc: AsyncService) -> None:
        assert await svc.P("p", "aio", 60000)
        await svc.try_acquire("t", timeout="1m", limit=3)
        cancelled = asyncio.Event()

        async def work() -> None:
            async with svc.lock("b", timeout="1m"):
                entered.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        entered = asyncio.Event()
        task = asyncio.create_task(work())
        await entered.wait()
        await svc.close()
        assert cancelled.is_set() and task.cancelled()
        with pytest.raises(ShutdownError):
            await svc.P("p", "aio", 1000)

    _run(store_url, body)
    for name in ("p", "t", "b"):
        assert not other.status(name)[0].taken and not other.status(name)[0].slots, name
        assert _releases(other, name) == ["shutdown"], name
    other.close()


def test_sigterm_of_an_asyncio_service_cancels_its_work_and_hands_the_lease_on(store_url: str,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "told"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen([sys.executable, str(HELPERS / "aio_service.py"), store_url, "svc", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
    with Service(Settings(node_id="waiter", store=store_url)) as waiter:
        got: list[float] = []
        thread = threading.Thread(target=lambda: got.append(
            time.monotonic() if waiter.acquire("b", timeout="5s", wait="60s") else 0))
        thread.start()
        wait_until(lambda: waiter.status("b")[0].waiters, timeout=10 * BUSY_S)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30 * BUSY_S) == 143, proc.stderr.read() if proc.stderr else ""
        thread.join(60)
        assert got and got[0] - sent < 15, got  # at the release, not at the 60 s lease's end
        assert out.read_text() == "told: shutdown on SIGTERM\ncancelled\n"
        assert "shutdown on SIGTERM" in _releases(waiter, "b") and "shutdown on SIGTERM" in _releases(waiter, "p")


def test_importing_the_asyncio_api_loads_neither_the_cli_nor_the_mongodb_driver() -> None:
    code = ("import sys, mutexctl.aio\n"
            "print(sorted(m for m in ('typer', 'rich', 'click', 'pymongo') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
    assert done.stdout.strip() == "[]", done.stderr


def test_broadcast_listen_and_acks_from_coroutines(store_url: str) -> None:
    async def body(svc: AsyncService) -> None:
        await svc.init_schema()
        listener = await AsyncService.open(Settings(node_id="listener", store=store_url))
        try:
            first = await svc.broadcast("one", {"n": 1}, to=["listener"])
            second = await svc.broadcast("two", [2], to=["listener"])
            got = []
            async for message in listener.listen(from_start=True):
                got.append(message.value)
                break  # acks the one handed over
            assert got == [{"n": 1}]
            report = await svc.wait_acks(first, wait="5s")
            assert [a.node for a in report.acks] == ["listener"]
            stop = asyncio.Event()

            async def handler(message: object) -> int:
                stop.set()
                return 3

            assert await listener.handle(handler, stop=stop) == 1
            assert [(a.node, a.status) for a in (await svc.ack_report(second.id)).acks] == [("listener", 3)]
            _, nodes = await svc.nodes("default")
            assert "listener" in [n.node for n in nodes]
        finally:
            await listener.close()

    _run(store_url, body)


def test_run_once_runs_the_work_once_among_tasks(store_url: str) -> None:
    async def body(svc: AsyncService) -> None:
        ran: list[int] = []

        async def work(held: object) -> None:
            ran.append(1)
            await asyncio.sleep(0.2)

        markers = await asyncio.gather(*(svc.run_once("migrate", "v1", work, timeout="10s") for _ in range(3)))
        assert ran == [1] and len({m.fence for m in markers}) == 1

    _run(store_url, body)


def _bench() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "bench_loop_lag.py"
    spec = importlib.util.spec_from_file_location("bench_loop_lag", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_loop_lag_benchmark_catches_a_blocking_call(store_url: str) -> None:
    """The benchmark's measurement can fail: a blocking call (here the synchronous lock() waiting
    behind a holder, the stall this API removes) shows up as the lag it causes."""
    bench = _bench()
    holder = Service(Settings(node_id="holder", store=store_url))
    holder.try_acquire("job", timeout="1m")
    blocking = Service(Settings(node_id="blocking", store=store_url))
    threading.Timer(0.5, holder.release, args=("job",)).start()

    async def stalls() -> None:
        with blocking.lock("job", timeout="5s", wait=f"{30 * BUSY_S}s"):
            pass

    _, worst_ms = bench.summary(asyncio.run(bench.lags_during(stalls())))
    assert worst_ms >= 400, worst_ms
    holder.close()
    blocking.close()
