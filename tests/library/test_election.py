"""Leader election in the library (thread API and event loop): first come first served, the term is
the fence, the value announced for that term only, observers see each change in term order."""

from __future__ import annotations

import asyncio
import threading

import pytest
from mutexctl import LockHeldError, Service, Settings, UsageError
from mutexctl.aio import AsyncService

from ..conftest import BUSY_S, wait_until


def test_the_leader_is_the_lease_holder_with_its_value_and_term(service: Service, other: Service) -> None:
    assert service.leader("primary") is None
    with service.elect("primary", value="10.0.0.1:8080", timeout="1m") as held:
        leader = other.leader("primary")
        assert leader is not None and leader.since is not None
        assert (leader.node, leader.value, leader.term) == ("node-a", "10.0.0.1:8080", held.fence)
        with pytest.raises(LockHeldError), other.elect("primary", value="b", wait=0):  # a standby that will not wait
            pass
    assert other.leader("primary") is None  # leaving the block resigns
    with other.elect("primary", value="b", timeout="1m") as second:
        assert second.fence == held.fence + 1 and service.leader("primary").value == "b"  # type: ignore[union-attr]
    with pytest.raises(UsageError):
        service.elect("primary", value="x" * 5000)


def test_a_value_is_never_shown_under_another_term(service: Service, other: Service) -> None:
    with service.elect("e", value="first", timeout="1m"):
        pass
    lease = other.try_acquire("e", timeout="1m")  # taken without an election: nothing announced for it
    leader = service.leader("e")
    assert leader is not None and leader.term == lease.fence and leader.node == "node-b" and leader.value is None
    other.release("e", token=lease.fence)


def test_observers_see_each_change_once_in_term_order(settings: Settings) -> None:
    seen: list[tuple[str, str | None, int] | None] = []
    stop = threading.Event()

    def observe() -> None:
        with Service(settings._replace(node_id="watcher")) as watcher:
            for leader in watcher.observe("cluster", interval="50ms"):
                seen.append(None if leader is None else (leader.node, leader.value, leader.term))
                if stop.is_set():
                    return

    reader = threading.Thread(target=observe, daemon=True)
    reader.start()
    wait_until(lambda: seen == [None], timeout=20 * BUSY_S)
    terms = []
    for n in range(3):
        with Service(settings._replace(node_id=f"n{n}")) as candidate, \
                candidate.elect("cluster", value=f"v{n}", timeout="1m") as held:
            terms.append(held.fence)
            wait_until(lambda n=n: seen and seen[-1] is not None and seen[-1][1] == f"v{n}", timeout=20 * BUSY_S)
    wait_until(lambda: seen[-1] is None, timeout=20 * BUSY_S)
    stop.set()
    leaders = [s for s in seen if s is not None]
    assert leaders == [(f"n{n}", f"v{n}", terms[n]) for n in range(3)], seen  # each once, in term order
    assert terms == sorted(terms) and len(set(terms)) == 3


def test_the_event_loop_elects_and_observes_alike(store_url: str) -> None:
    async def main() -> None:
        async with await AsyncService.open(Settings(node_id="loop-a", store=store_url)) as first, \
                await AsyncService.open(Settings(node_id="loop-b", store=store_url)) as second:
            async with first.elect("aio-primary", value="a", timeout="1m") as held:
                leader = await second.leader("aio-primary")
                assert leader is not None and (leader.node, leader.value, leader.term) == ("loop-a", "a", held.fence)
                standby = asyncio.create_task(_lead(second))
                await asyncio.sleep(0.3)
                assert not standby.done()  # waiting in line, not leading
            assert await standby == held.fence + 1  # the standby leads once the leader resigns
            seen = []
            async for found in first.observe("aio-primary", interval="50ms"):
                seen.append(found)
                break
            assert seen == [None]

    async def _lead(svc: AsyncService) -> int:
        async with svc.elect("aio-primary", value="b", timeout="1m") as held:
            return held.fence

    asyncio.run(asyncio.wait_for(main(), timeout=60 * BUSY_S))


def test_terms_begun_and_ended_between_two_reads_are_filled_in_from_the_history(settings: Settings) -> None:
    with Service(settings._replace(node_id="watcher")) as watcher:
        changes = watcher.observe("flap", interval="1s")
        assert next(changes) is None
        terms = []
        with Service(settings._replace(node_id="f")) as candidate:  # three quick terms, well inside one interval
            for n in range(3):
                with candidate.elect("flap", value=f"v{n}", timeout="1m") as held:
                    terms.append(held.fence)
        seen = [next(changes) for _ in range(4)]
        changes.close()
    assert [(s.node, s.term) if s is not None else None for s in seen] == [("f", t) for t in terms] + [None], seen
