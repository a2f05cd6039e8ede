"""The store contract (stores.protocols), run against every store (STORES in conftest)."""

from __future__ import annotations

import time

import pytest
from mutexctl import LeaseExpiredError, LockHeldError, NotOwnerError, Service, UsageError
from mutexctl.models import Holder, LeaseRequest

from ..conftest import StoreClock, wait_until


def test_acquiring_a_free_mutex_returns_a_lease_with_the_first_fence(service: Service) -> None:
    lease = service.try_acquire("deploy", timeout="5s")
    assert (lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms) == ("deploy", "node-a", 1, 5000)
    assert (lease.expires_at - lease.taken_at).total_seconds() == pytest.approx(5.0, abs=0.01)


def test_a_held_mutex_refuses_another_node_and_names_the_holder(service: Service, other: Service) -> None:
    service.try_acquire("deploy", timeout="5s")
    with pytest.raises(LockHeldError) as caught:
        other.try_acquire("deploy", timeout="5s")
    assert "node-a" in str(caught.value)
    assert caught.value.state is not None and caught.value.state.taken_by == "node-a"


def test_a_held_mutex_refuses_the_same_node_too(service: Service) -> None:
    service.try_acquire("deploy", timeout="5s")
    with pytest.raises(LockHeldError):
        service.try_acquire("deploy", timeout="5s")


def test_an_expired_lease_is_taken_over_after_its_timeout_and_not_before(service: Service, other: Service,
                                                                         clock: StoreClock) -> None:
    started = time.monotonic()
    # (2 s, so that on a server's clock, where time really passes, the try below comes well inside it)
    first = service.try_acquire("job", timeout="2s")
    clock.advance(1000, service.store)
    with pytest.raises(LockHeldError):
        other.try_acquire("job", timeout="5s")
    # (on a server's clock, time really passed: the refusal must have come inside the lease)
    assert clock.injected or time.monotonic() - started < 2.0
    clock.advance(1000, service.store)
    second = wait_until(lambda: _try(other, "job"), timeout=5)
    assert second.fence == first.fence + 1 and second.node_id == "node-b"


def test_a_late_release_from_a_former_holder_does_not_free_the_next_holder(service: Service, other: Service,
                                                                           clock: StoreClock) -> None:
    old = service.try_acquire("job", timeout="200ms")
    clock.advance(200, service.store)
    new = other.try_acquire("job", timeout="5s")
    with pytest.raises(NotOwnerError):
        service.release("job", token=old.fence)
    with pytest.raises(NotOwnerError):
        service.release("job")  # by node alone: node-a does not hold it either
    state = other.status("job")[0]
    assert (state.state, state.taken_by, state.fence) == ("held", "node-b", new.fence)


def test_a_late_renew_from_a_former_holder_changes_nothing(service: Service, other: Service,
                                                           clock: StoreClock) -> None:
    old = service.try_acquire("job", timeout="200ms")
    clock.advance(200, service.store)
    new = other.try_acquire("job", timeout="5s")
    before = other.status("job")[0]
    with pytest.raises(NotOwnerError):
        service.renew(old)
    after = other.status("job")[0]
    assert (after.taken_by, after.fence, after.expires_at) == ("node-b", new.fence, before.expires_at)


def test_renewing_our_own_expired_lease_reports_it_expired(service: Service, clock: StoreClock) -> None:
    lease = service.try_acquire("job", timeout="150ms")
    clock.advance(150, service.store)
    assert service.status("job")[0].state == "expired"
    with pytest.raises(LeaseExpiredError):
        service.renew(lease)


def test_renew_extends_our_live_lease(service: Service, other: Service) -> None:
    lease = service.try_acquire("job", timeout="800ms")
    for _ in range(8):  # 8 renewals over ~2.4 s: three times the timeout
        time.sleep(0.3)
        lease = service.renew(lease)
        with pytest.raises(LockHeldError):
            other.try_acquire("job")
    assert service.status("job")[0].taken_by == "node-a"


def test_releasing_our_own_expired_lease_frees_it_but_says_it_had_expired(service: Service,
                                                                          clock: StoreClock) -> None:
    lease = service.try_acquire("job", timeout="100ms")
    clock.advance(100, service.store)
    assert service.status("job")[0].state == "expired"
    with pytest.raises(LeaseExpiredError):
        service.release("job", token=lease.fence)
    assert service.status("job")[0].state == "free"


def test_fences_strictly_increase_across_acquires_releases_and_takeovers(service: Service, other: Service) -> None:
    fences = []
    for _ in range(3):
        lease = service.try_acquire("fenced", timeout="5s")
        fences.append(lease.fence)
        service.release("fenced", token=lease.fence)
        lease = other.try_acquire("fenced", timeout="100ms")
        fences.append(lease.fence)
        fences.append(wait_until(lambda: _try(service, "fenced"), timeout=5).fence)  # takeover after expiry
        service.release("fenced")
    assert fences == sorted(set(fences)) and fences[0] == 1


def test_release_keeps_the_record_so_the_fence_never_restarts(service: Service) -> None:
    lease = service.try_acquire("kept", timeout="5s")
    service.release("kept", token=lease.fence)
    state = service.status("kept")[0]
    assert (state.state, state.fence) == ("free", lease.fence)
    assert service.try_acquire("kept").fence == lease.fence + 1


def test_release_with_another_token_is_refused_and_keeps_the_lease(service: Service) -> None:
    lease = service.try_acquire("job", timeout="5s")
    with pytest.raises(NotOwnerError):
        service.release("job", token=lease.fence + 1)
    assert service.status("job")[0].state == "held"


def test_a_forced_release_ignores_the_owner_and_is_recorded(service: Service, other: Service) -> None:
    lease = service.try_acquire("stuck", timeout="1h")
    before = other.force_release("stuck", reason="holder VM was deleted")
    assert before is not None and before.taken_by == "node-a" and before.fence == lease.fence
    assert other.status("stuck")[0].state == "free"
    [record] = other.forced_releases("stuck")
    assert (record.by_node, record.reason, record.previous_holder, record.previous_fence) == \
           ("node-b", "holder VM was deleted", "node-a", lease.fence)
    with pytest.raises(NotOwnerError):  # the former holder's release cannot touch the next lease
        service.release("stuck", token=lease.fence)


def test_a_forced_release_needs_a_reason(service: Service) -> None:
    service.try_acquire("stuck", timeout="1h")
    with pytest.raises(UsageError):
        service.force_release("stuck", reason="  ")
    assert service.status("stuck")[0].state == "held"


def test_a_forced_release_of_a_free_mutex_changes_nothing(service: Service) -> None:
    assert service.force_release("never", reason="cleanup") is None
    assert service.forced_releases() == []


def test_status_tells_held_expired_and_free_apart_with_time_left_on_the_store_clock(service: Service,
                                                                                   clock: StoreClock) -> None:
    service.try_acquire("held", timeout="1h")
    service.try_acquire("expired", timeout="50ms")
    service.release("free", token=service.try_acquire("free").fence)
    clock.advance(50, service.store)
    states = {s.mutex_id: s for s in service.status()}
    assert {k: s.state for k, s in states.items()} == {"held": "held", "expired": "expired", "free": "free"}
    assert 3_590_000 < states["held"].remaining_ms <= 3_600_000
    assert states["held"].holder is not None and states["held"].holder.pid > 0


def test_the_overview_reads_mutexes_history_and_schema_together(service: Service, other: Service) -> None:
    assert service.overview().states == () and service.overview().schema is None  # never initialized
    service.try_acquire("a", timeout="1h")
    service.try_acquire("b", timeout="1h")
    for reason in ("first", "second", "third"):
        other.force_release("b", reason=reason)
        service.try_acquire("b", timeout="1h")
    other.force_release("a", reason="a's turn")
    service.init_schema()
    view = other.overview(forced_limit=2)
    assert [(s.mutex_id, s.state) for s in view.states] == [("a", "free"), ("b", "held"), ("mutexctl.schema", "free")]
    assert [f.reason for f in view.forced] == ["a's turn", "third"]  # newest first, at most the limit
    assert view.schema is not None and view.schema.version >= 1
    assert abs((view.store_now - view.states[0].store_now).total_seconds()) < 5
    one = other.overview("b")
    assert [s.mutex_id for s in one.states] == ["b"] and [f.reason for f in one.forced] == ["third", "second", "first"]
    assert other.overview("never-taken").states == ()


def test_holder_details_are_stored_for_on_call(service: Service) -> None:
    lease = service.try_acquire("job", timeout="5s", command="./migrate.sh --all")
    state = service.status("job")[0]
    assert state.holder is not None
    assert state.holder.command == "./migrate.sh --all" and state.holder.user and state.holder.host
    assert state.fence == lease.fence and state.timeout_ms == 5000


def test_the_seed_P_and_V_interface(service: Service, other: Service) -> None:
    assert service.P("module-service-action", "node-7", 1000) is True
    assert other.P("module-service-action", "node-8", 1000) is False
    assert service.V("module-service-action") is True
    assert other.P("module-service-action", "node-8", 1000) is True


def test_V_after_the_lease_passed_on_frees_nothing(service: Service, other: Service) -> None:
    assert service.P("m", "node-a", 100)
    wait_until(lambda: other.P("m", "node-b", 5000), timeout=5)
    assert service.V("m") is False
    assert other.status("m")[0].taken_by == "node-b"


def test_P_refuses_a_nonsense_timeout(service: Service) -> None:
    with pytest.raises(UsageError):
        service.P("m", "node-a", 0)


def test_store_methods_take_a_holder_record(service: Service) -> None:
    lease = service.store.try_acquire(LeaseRequest("raw", "node-x", 1000, Holder("h", 1, "u", "c")))
    assert lease.fence == 1 and service.status("raw")[0].holder == Holder("h", 1, "u", "c")


def _try(svc: Service, name: str) -> object:
    try:
        return svc.try_acquire(name, timeout="5s")
    except LockHeldError:
        return None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_process_out_of_file_descriptors_gets_a_clear_error_and_holds_nothing_half(store_url: str) -> None:
    import subprocess
    import sys

    from mutexctl import Service, Settings

    from ..conftest import HELPERS

    done = subprocess.run([sys.executable, str(HELPERS / "many_leases.py"), store_url, "64"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    taken, error, message, hint = done.stdout.splitlines()[:4]
    assert error == "StoreUnavailableError" and "Too many open files" in message and "ulimit -n" in hint
    with Service(Settings(node_id="on-call", store=store_url)) as svc:
        states = {s.mutex_id: s.state for s in svc.overview().states}
    assert 5 < int(taken) < 64 and states[f"m{int(taken) - 1}"] == "held"
    assert states.get(f"m{taken}", "free") == "free"  # the refused take left nothing held
