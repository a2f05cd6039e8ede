"""The store protocols (stores/protocols.py), tested at the store boundary: the same tests against every
store object directly, as apscheduler tests its data stores. The Service, CLI and process suites run
on top of these. SQLite's clock is injected (expiry tests move time); MongoDB's is the server's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mutexctl import LeaseExpiredError, LockHeldError, NotOwnerError, SchemaError, Settings, StoreError
from mutexctl.models import Holder, LeaseRequest, Message, Registration
from mutexctl.stores.protocols import Store
from mutexctl.stores.steps import SCHEMA_VERSION, STEPS

from ..conftest import StoreClock

HOLDER = Holder("host-1", 4242, "ops", "./job --all")
OTHER = Holder("host-2", 4343, "ops", "./other")


class _ThroughTheLoop:
    """A store seen through the asynchronous executor (mutexctl.aio): each method call is awaited on
    an event loop, so the protocol suite proves the async path sends the same operations."""

    def __init__(self, store: Store, settings: Settings) -> None:
        from mutexctl.aio.store import open_async_store

        self._store = store
        self._loop = asyncio.new_event_loop()
        self._async = self._loop.run_until_complete(open_async_store(settings, store))

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found) or name.startswith("_"):
            return found
        return lambda *args, **kwargs: self._loop.run_until_complete(self._async.call(name, *args, **kwargs))

    def close(self) -> None:
        self._loop.run_until_complete(self._async.close())
        self._loop.close()
        self._store.close()


@pytest.fixture(params=["sync", "async"])
def raw_store(request: pytest.FixtureRequest, store_url: str, clock: StoreClock) -> Iterator[Store]:
    settings = Settings(node_id="unused", store=store_url)
    store = clock.open(settings)
    through: Any = store if request.param == "sync" else _ThroughTheLoop(store, settings)
    try:
        yield through
    finally:
        through.close()


def test_a_free_mutex_is_taken_with_the_first_fence_and_then_refused_to_everyone(raw_store: Store) -> None:
    lease = raw_store.try_acquire(LeaseRequest("m", "a", 5000, HOLDER))
    assert (lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms) == ("m", "a", 1, 5000)
    assert (lease.expires_at - lease.taken_at).total_seconds() == pytest.approx(5.0, abs=0.01)
    for node in ("a", "b"):
        with pytest.raises(LockHeldError):
            raw_store.try_acquire(LeaseRequest("m", node, 5000, OTHER))
    state = raw_store.get("m")
    assert state is not None and (state.state, state.taken_by, state.fence, state.holder) == ("held", "a", 1, HOLDER)


def test_a_lease_expires_at_its_timeout_on_the_store_clock_and_not_before(raw_store: Store,
                                                                          clock: StoreClock) -> None:
    # (on MongoDB the server's clock runs: 1 s of room either way for a loaded machine's overshoot)
    first = raw_store.try_acquire(LeaseRequest("m", "a", 2000, HOLDER))
    clock.advance(1000, raw_store)
    with pytest.raises(LockHeldError):
        raw_store.try_acquire(LeaseRequest("m", "b", 5000, OTHER))
    state = raw_store.get("m")
    assert state is not None and state.state == "held" and 0 < (state.remaining_ms or 0) <= 1000
    clock.advance(1000, raw_store)
    assert raw_store.get("m").state == "expired"  # type: ignore[union-attr]
    second = raw_store.try_acquire(LeaseRequest("m", "b", 5000, OTHER))
    assert second.fence == first.fence + 1


def test_renew_extends_a_live_lease_and_refuses_an_expired_one(raw_store: Store, clock: StoreClock) -> None:
    lease = raw_store.try_acquire(LeaseRequest("m", "a", 2000, HOLDER))
    clock.advance(1000, raw_store)
    renewed = raw_store.renew(lease)
    assert renewed.expires_at > lease.expires_at and renewed.fence == lease.fence
    clock.advance(1200, raw_store)  # 2.2 s after the acquire, 1.2 s after the renewal: still ours
    with pytest.raises(LockHeldError):
        raw_store.try_acquire(LeaseRequest("m", "b", 5000, OTHER))
    clock.advance(900, raw_store)
    with pytest.raises(LeaseExpiredError):
        raw_store.renew(renewed)


def test_release_and_renew_are_guarded_by_node_and_fence(raw_store: Store, clock: StoreClock) -> None:
    old = raw_store.try_acquire(LeaseRequest("m", "a", 200, HOLDER))
    clock.advance(200, raw_store)
    new = raw_store.try_acquire(LeaseRequest("m", "b", 60_000, OTHER))
    for attempt in (lambda: raw_store.release("m", "a", old.fence), lambda: raw_store.release("m", "a", None),
                    lambda: raw_store.renew(old), lambda: raw_store.release("m", "b", old.fence)):
        with pytest.raises(NotOwnerError):
            attempt()
    state = raw_store.get("m")
    assert state is not None and (state.state, state.taken_by, state.fence) == ("held", "b", new.fence)
    raw_store.release("m", "b", new.fence)
    assert raw_store.get("m").state == "free"  # type: ignore[union-attr]


def test_releasing_an_expired_lease_frees_it_and_says_so(raw_store: Store, clock: StoreClock) -> None:
    lease = raw_store.try_acquire(LeaseRequest("m", "a", 100, HOLDER))
    clock.advance(100, raw_store)
    with pytest.raises(LeaseExpiredError, match="had already expired"):
        raw_store.release("m", "a", lease.fence)
    assert raw_store.get("m").state == "free"  # type: ignore[union-attr]


def test_the_fence_grows_across_releases_takeovers_and_forced_releases(raw_store: Store, clock: StoreClock) -> None:
    fences = [raw_store.try_acquire(LeaseRequest("m", "a", 100, HOLDER)).fence]
    clock.advance(100, raw_store)
    fences.append(raw_store.try_acquire(LeaseRequest("m", "b", 60_000, OTHER)).fence)  # take-over
    raw_store.force_release("m", "ops", OTHER, "test")
    fences.append(raw_store.try_acquire(LeaseRequest("m", "a", 60_000, HOLDER)).fence)
    raw_store.release("m", "a", fences[-1])
    fences.append(raw_store.try_acquire(LeaseRequest("m", "b", 60_000, OTHER)).fence)
    assert fences == [1, 2, 3, 4]


def test_a_forced_release_returns_what_it_broke_and_is_recorded(raw_store: Store) -> None:
    assert raw_store.force_release("m", "ops", OTHER, "nothing held") is None
    lease = raw_store.try_acquire(LeaseRequest("m", "a", 60_000, HOLDER))
    before = raw_store.force_release("m", "ops", OTHER, "INC-1: host gone")
    assert before is not None and (before.taken_by, before.fence, before.state) == ("a", lease.fence, "held")
    assert raw_store.get("m").state == "free"  # type: ignore[union-attr]
    [record] = raw_store.forced_releases("m")
    assert (record.by_node, record.reason, record.previous_holder, record.previous_fence) == \
           ("ops", "INC-1: host gone", "a", lease.fence)
    assert raw_store.overview("m", 5).forced == (record,)


def test_the_overview_reads_every_mutex_and_the_store_clock(raw_store: Store) -> None:
    empty = raw_store.overview(None, 5)
    assert empty.states == () and empty.forced == () and empty.schema is None
    raw_store.try_acquire(LeaseRequest("b", "x", 60_000, HOLDER))
    raw_store.try_acquire(LeaseRequest("a", "x", 60_000, HOLDER))
    view = raw_store.overview(None, 5)
    assert [s.mutex_id for s in view.states] == ["a", "b"]
    assert abs((view.store_now - datetime.now(UTC)).total_seconds()) < 5


def test_prepare_writes_refuses_a_store_newer_than_this_tool(raw_store: Store, clock: StoreClock,
                                                             store_url: str) -> None:
    assert raw_store.prepare_writes() is None  # never initialized: lock commands work anyway
    raw_store.record_schema_step(SCHEMA_VERSION + 1, "a-newer-tool", "9.9.9")
    fresh = clock.open(Settings(node_id="x", store=store_url))
    try:
        with pytest.raises(SchemaError, match="newer than this tool"):
            fresh.prepare_writes()
    finally:
        fresh.close()


def test_every_schema_step_applies_twice_without_harm_and_is_recorded_once(raw_store: Store) -> None:
    for step in STEPS:
        raw_store.apply_schema_step(step.number)
        raw_store.apply_schema_step(step.number)
        raw_store.record_schema_step(step.number, "tester", "0.0.0")
    state = raw_store.schema_state()
    assert state is not None and state.version == SCHEMA_VERSION
    assert [s.step for s in state.steps] == [s.number for s in STEPS]
    assert raw_store.schema_problems() == []
    assert raw_store.prepare_writes() is not None  # after a recorded step, read afresh


def test_the_log_numbers_messages_keeps_their_order_and_takes_each_ack_once(raw_store: Store) -> None:
    for step in STEPS:
        raw_store.apply_schema_step(step.number)
    assert [raw_store.next_seq("c") for _ in range(3)] == [1, 2, 3] and raw_store.latest_seq("c") == 3
    long_ago = datetime.now(UTC) - timedelta(days=30)  # a sender's clock: the store stamps its own
    stored = [raw_store.append_message(Message(f"c:{seq}", "c", seq, "act", "{}", "s", (), ("n",), long_ago))
              for seq in (2, 1, 3)]  # inserted out of order, as racing senders do
    store_now, _ = raw_store.nodes(None)
    assert all(abs(m.at - store_now) < timedelta(minutes=1) for m in stored)
    assert [m.seq for m in raw_store.messages_after("c", 0)] == [1, 2, 3]
    assert [m.seq for m in raw_store.messages_after("c", 1, limit=1)] == [2]
    with pytest.raises(StoreError):  # a number is never taken twice
        raw_store.append_message(Message("c:1", "c", 1, "again", "{}", "s", (), (), long_ago))
    assert raw_store.record_ack("c:1", "n", 0, 5) is True
    assert raw_store.record_ack("c:1", "n", 3, 5) is False  # the first ack stands
    [ack] = raw_store.acks("c:1")
    assert ack.status == 0 and abs(ack.at - store_now) < timedelta(minutes=1)
    assert raw_store.acked("n", ["c:1", "c:2"]) == {"c:1"}


def test_the_node_registry_keeps_a_cursor_and_tells_live_nodes(raw_store: Store) -> None:
    for step in STEPS:
        raw_store.apply_schema_step(step.number)
    assert raw_store.register_node("n1", "c", "h", 1, since=4) == Registration(None, 4)
    raw_store.save_cursor("n1", "c", 7)
    assert raw_store.register_node("n1", "c", "h", 1, since=9) == Registration(7, 4)  # since: the first one
    raw_store.register_node("n2", "c", "h", 2, since=9)
    assert raw_store.live_nodes("c", 30) == ["n1", "n2"] and raw_store.live_nodes("other", 30) == []
    now, nodes = raw_store.nodes("c")
    assert [(n.node, n.cursor, n.since, n.pid) for n in nodes] == [("n1", 7, 4, 1), ("n2", None, 9, 2)]
    assert all(abs(n.last_seen - now) < timedelta(minutes=1) for n in nodes)
