"""Semaphores, shared holds and run-once markers at the store level, on every store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mutexctl import LeaseExpiredError, LockHeldError, NotOwnerError, Settings
from mutexctl.models import SEMAPHORE, SHARED, Holder, LeaseRequest
from mutexctl.stores.protocols import Store

from ..conftest import StoreClock

H = Holder("host-1", 4242, "ops", "./job")


@pytest.fixture
def raw_store(store_url: str, clock: StoreClock) -> Iterator[Store]:
    store = clock.open(Settings(node_id="unused", store=store_url))
    try:
        store.prepare_writes()
        yield store
    finally:
        store.close()


def _slot(store: Store, node: str, *, limit: int | None = 3, ms: int = 5000, name: str = "s"):  # type: ignore[no-untyped-def]
    return store.try_acquire_slot(LeaseRequest(name, node, ms, H, kind=SEMAPHORE if limit else SHARED, limit=limit))


def test_a_semaphore_admits_limit_holders_each_with_its_own_fence_and_expiry(raw_store: Store) -> None:
    leases = [_slot(raw_store, f"n{i}") for i in range(3)]
    assert [lease.fence for lease in leases] == [1, 2, 3] and all(lease.kind == SEMAPHORE for lease in leases)
    with pytest.raises(LockHeldError):
        _slot(raw_store, "n3")
    state = raw_store.get("s")
    assert state is not None and state.shown_state == "3/3 held" and state.state == "held"
    assert [(h.node, h.fence) for h in state.slots] == [("n0", 1), ("n1", 2), ("n2", 3)]
    with pytest.raises(LockHeldError):  # an exclusive acquire waits for every slot
        raw_store.try_acquire(LeaseRequest("s", "x", 5000, H))
    raw_store.release_slot("s", "n1", 2)
    assert _slot(raw_store, "n3").fence == 4
    assert [h.node for h in raw_store.get("s").slots] == ["n0", "n2", "n3"]  # type: ignore[union-attr]


def test_an_ended_slot_is_reclaimed_by_the_next_taker_and_its_late_release_says_so(raw_store: Store,
                                                                                   clock: StoreClock) -> None:
    short = _slot(raw_store, "a", limit=1, ms=300)
    with pytest.raises(LockHeldError):
        _slot(raw_store, "b", limit=1)
    clock.advance(350, raw_store)
    taken = _slot(raw_store, "b", limit=1)
    assert taken.fence == short.fence + 1
    with pytest.raises(NotOwnerError):
        raw_store.renew_slot(short)
    with pytest.raises(NotOwnerError):
        raw_store.release_slot("s", "a", short.fence)


def test_renew_moves_only_its_own_slot_and_the_seed_view_follows_the_latest_end(raw_store: Store,
                                                                               clock: StoreClock) -> None:
    # (1.5 s of room on each side: on MongoDB the server's clock runs, and a loaded machine overshoots)
    first = _slot(raw_store, "a", ms=3000)
    _slot(raw_store, "b", ms=3000)
    clock.advance(1500, raw_store)
    renewed = raw_store.renew_slot(first)
    assert renewed.expires_at > first.expires_at
    clock.advance(1600, raw_store)  # b's slot ended, a's (renewed to 4.5 s) did not
    state = raw_store.get("s")
    assert state is not None and [h.node for h in state.slots] == ["a"]
    assert state.taken and state.remaining_ms is not None and state.remaining_ms > 0


def test_a_late_slot_release_frees_it_and_tells(raw_store: Store, clock: StoreClock) -> None:
    lease = _slot(raw_store, "a", ms=300)
    clock.advance(350, raw_store)
    with pytest.raises(LeaseExpiredError):
        raw_store.release_slot("s", "a", lease.fence)
    assert raw_store.get("s").state == "free"  # type: ignore[union-attr]


def test_holders_must_agree_on_the_kind_and_limit(raw_store: Store) -> None:
    _slot(raw_store, "a", limit=3)
    for other in ({"limit": 2}, {"limit": None}):
        with pytest.raises(LockHeldError) as refused:
            _slot(raw_store, "b", **other)  # type: ignore[arg-type]
        state = refused.value.state or raw_store.get("s")
        assert state is not None and state.kind == SEMAPHORE and state.limit == 3


def test_shared_holds_share_exclude_writers_and_wait_for_an_announced_writer(raw_store: Store,
                                                                              clock: StoreClock) -> None:
    readers = [_slot(raw_store, f"r{i}", limit=None) for i in range(3)]
    assert all(r.kind == SHARED for r in readers)
    with pytest.raises(LockHeldError):
        raw_store.try_acquire(LeaseRequest("s", "writer", 5000, H))
    raw_store.announce_writer("s", "writer")
    state = raw_store.get("s")
    assert state is not None and state.writer_waiting == "writer" and state.shown_state == "3 shared"
    with pytest.raises(LockHeldError):  # a new reader waits behind the announced writer
        _slot(raw_store, "late-reader", limit=None)
    for reader in readers:
        raw_store.release_slot("s", reader.node_id, reader.fence)
    writer = raw_store.try_acquire(LeaseRequest("s", "writer", 5000, H))
    assert writer.fence == 4 and raw_store.get("s").kind == "exclusive"  # type: ignore[union-attr]
    with pytest.raises(LockHeldError):
        _slot(raw_store, "r9", limit=None)
    raw_store.release("s", "writer", writer.fence)
    assert _slot(raw_store, "r9", limit=None).fence == 5


def test_a_writer_s_announcement_lapses_when_it_stops_waiting(raw_store: Store, clock: StoreClock) -> None:
    _slot(raw_store, "r1", limit=None, ms=60_000)
    raw_store.announce_writer("s", "writer")
    with pytest.raises(LockHeldError):
        _slot(raw_store, "r2", limit=None)
    clock.advance(3100, raw_store)
    assert _slot(raw_store, "r2", limit=None).fence == 2


def test_a_writer_that_stops_waiting_withdraws_its_announcement_at_once(raw_store: Store) -> None:
    _slot(raw_store, "r1", limit=None, ms=60_000)
    raw_store.announce_writer("s", "writer")
    raw_store.withdraw_writer("s", "someone-else")  # only the announcer's own
    assert raw_store.get("s").writer_waiting == "writer"  # type: ignore[union-attr]
    raw_store.withdraw_writer("s", "writer")
    assert raw_store.get("s").writer_waiting is None  # type: ignore[union-attr]
    assert _slot(raw_store, "r2", limit=None).fence == 2
    raw_store.withdraw_writer("never-held", "writer")  # nothing to withdraw: no error, no record
    assert raw_store.get("never-held") is None


def test_a_forced_release_ends_one_holder_by_node_or_fence_or_all_on_the_record(raw_store: Store) -> None:
    leases = [_slot(raw_store, f"n{i}") for i in range(3)]
    before = raw_store.force_release_slots("s", "oncall", H, "INC-1", node="n1", fence=None)
    assert before is not None and len(before.slots) == 3
    assert [h.node for h in raw_store.get("s").slots] == ["n0", "n2"]  # type: ignore[union-attr]
    assert raw_store.force_release_slots("s", "oncall", H, "INC-2", node=None, fence=leases[2].fence) is not None
    assert raw_store.force_release_slots("s", "oncall", H, "INC-3", node="nobody", fence=None) is None
    assert raw_store.force_release_slots("s", "oncall", H, "INC-4", node=None, fence=None) is not None
    assert raw_store.get("s").state == "free"  # type: ignore[union-attr]
    records = raw_store.forced_releases("s")
    assert sorted((r.previous_holder, r.previous_fence, r.reason) for r in records) == [
        ("n0", 1, "INC-4"), ("n1", 2, "INC-1"), ("n2", 3, "INC-2")]
    with pytest.raises(NotOwnerError):
        raw_store.renew_slot(leases[0])


def test_once_markers_are_stamped_once_and_cleared_on_the_record(raw_store: Store) -> None:
    assert raw_store.once_marker("migrate", "v42") is None
    first = raw_store.mark_once("migrate", "v42", "api-1", 7, H)
    again = raw_store.mark_once("migrate", "v42", "api-2", 8, H)
    assert (again.by_node, again.fence, again.at) == ("api-1", 7, first.at)  # the first record stands
    assert raw_store.once_marker("migrate", "v43") is None
    assert [m.key for m in raw_store.overview(None, 5).markers] == ["v42"]
    cleared = raw_store.clear_once("migrate", "v42", "oncall", H, "re-run the migration")
    assert cleared is not None and cleared.by_node == "api-1"
    assert raw_store.once_marker("migrate", "v42") is None
    assert raw_store.clear_once("migrate", "v42", "o", H, "x") is None
    [record] = raw_store.forced_releases("migrate")
    assert record.reason == "[once v42] re-run the migration" and record.previous_holder == "api-1"
