"""The library surface services use: lock() with background renewal, loss, and waiting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mutexctl import LeaseLostError, LockHeldError, Service, WaitTimeoutError

from ..conftest import BUSY_S, wait_until


def test_lock_renews_in_the_background_for_three_times_the_timeout(service: Service, other: Service) -> None:
    with service.lock("job", timeout="800ms") as held:
        deadline = time.monotonic() + 2.4
        while time.monotonic() < deadline:
            with pytest.raises(LockHeldError):
                other.try_acquire("job")
            time.sleep(0.05)
        assert not held.lost and held.fence == 1
    assert other.status("job")[0].state == "free"


def test_lock_reports_loss_and_raises_when_the_block_ends(service: Service, other: Service) -> None:
    with pytest.raises(LeaseLostError), service.lock("job", timeout="600ms") as held:
        other.force_release("job", reason="test")
        assert held.wait_lost(timeout=5)
        assert "renewal refused" in (held.lost_reason or "")


def test_a_system_suspend_longer_than_the_lease_is_noticed_within_a_keeper_tick(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lease deadlines run on CLOCK_BOOTTIME, which (unlike the monotonic clock) counts a suspend."""
    from mutexctl import clock, keeper

    assert clock.lease_clock() - time.clock_gettime(time.CLOCK_BOOTTIME) < 0.1
    with pytest.raises(LeaseLostError), service.lock("job", timeout="1m") as held:
        resumed = time.monotonic()
        # The machine slept 61 s: the boot-time clock jumped, the monotonic one did not.
        monkeypatch.setattr(keeper, "lease_clock", lambda real=clock.lease_clock: real() + 61)
        assert held.wait_lost(timeout=5)
        # within a keeper tick (0.25 s) and the machine's delay, not at the next renewal, 5 s later
        assert time.monotonic() - resumed < BUSY_S
        assert "suspended" in (held.lost_reason or "")


def test_acquire_waits_with_a_deadline(service: Service, other: Service) -> None:
    other.try_acquire("job", timeout="1h")
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        service.acquire("job", wait="300ms")
    assert 0.3 <= time.monotonic() - started < 0.3 + BUSY_S
    assert isinstance(caught.value, TimeoutError)


def test_acquire_wakes_when_the_holder_expires(service: Service, other: Service) -> None:
    other.try_acquire("job", timeout="400ms")
    started = time.monotonic()
    lease = service.acquire("job", wait="10s")
    assert 0.4 <= time.monotonic() - started < 0.4 + BUSY_S and lease.fence == 2  # (not at the 10 s wait's end)


def test_connect_resolves_configuration_like_the_cli(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mutexctl

    monkeypatch.setenv("MUTEXCTL_STORE", f"sqlite://{tmp_path / 'x.db'}")
    monkeypatch.setenv("MUTEXCTL_NODE_ID", "lib-node")
    with mutexctl.connect() as svc:
        assert svc.P("module-service-action", "node-7", 1000)
        assert svc.status()[0].taken_by == "node-7"
        assert svc.V("module-service-action")
    wait_until(lambda: True)


def test_the_library_names_its_own_arguments_not_the_cli_s_flags(tmp_path: Path) -> None:
    import mutexctl
    from mutexctl import ConfigError

    with pytest.raises(ConfigError) as caught:
        mutexctl.connect(config=str(tmp_path / "missing.yaml"))
    assert "(from config=)" in caught.value.message and "--" not in caught.value.message
    with pytest.raises(mutexctl.UsageError) as refused:
        mutexctl.connect(store=f"sqlite://{tmp_path}/s.db", node_id="n").try_acquire("m", limit=0)
    assert refused.value.message.startswith("limit 0") and "--" not in f"{refused.value.message} {refused.value.hint}"
