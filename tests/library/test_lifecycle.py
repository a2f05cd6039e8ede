"""A service's leases through its life: close releases them on the record, SIGTERM/SIGINT end a
service's work and hand its leases to the next waiter at once, loss and shutdown are told."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mutexctl import LeaseLostError, Service, Settings, ShutdownError
from mutexctl.models import SEMAPHORE

from ..conftest import BUSY_S, HELPERS, Cli, StoreClock, wait_until

LEASE_S = 60  # the helper's leases: a release at shutdown is told from an expiry by far


def _service_life(store_url: str, mode: str, out: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen([sys.executable, str(HELPERS / "service_life.py"), store_url, "svc", mode, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return proc


def _releases(service: Service, name: str) -> list[str | None]:
    return [e.reason for e in service.history([name]) if e.kind == "release"]


def test_close_releases_every_lease_the_service_holds_on_the_record(service: Service, other: Service) -> None:
    assert service.P("p", "node-a", 60000)
    service.try_acquire("t", timeout="1m")
    service.try_acquire("s", timeout="1m", limit=3)
    assert {lease.mutex_id for lease in service.held()} == {"p", "t", "s"}
    service.close()
    for name in ("p", "t", "s"):
        assert not other.status(name)[0].taken, name
        assert _releases(other, name) == ["shutdown"], name
    with pytest.raises(ShutdownError):
        service.P("p", "node-a", 1000)
    service.close()  # idempotent


def test_a_released_lease_is_not_released_again_at_close(service: Service, other: Service) -> None:
    service.try_acquire("t", timeout="1m")
    service.release("t")
    other.try_acquire("t", timeout="1m")
    service.close()
    assert other.status("t")[0].taken_by == "node-b"
    assert _releases(other, "t") == [None]


def test_close_tells_a_block_in_another_thread_to_stop_and_waits_for_it(service: Service, other: Service) -> None:
    told: list[str] = []
    left = threading.Event()

    def work() -> None:
        with service.lock("b", timeout="3s", on_lost=told.append) as held:
            entered.set()
            held.stop_event.wait()
            time.sleep(0.1)  # finishing its step
        left.set()

    entered = threading.Event()
    worker = threading.Thread(target=work)
    worker.start()
    assert entered.wait(10 * BUSY_S)
    service.close()
    assert left.is_set(), "close returned before the block had stopped"
    assert told == ["shutdown"]
    assert not other.status("b")[0].taken and _releases(other, "b") == ["shutdown"]
    worker.join()


def test_a_block_that_does_not_stop_keeps_its_lease_after_close(service: Service, other: Service) -> None:
    release = threading.Event()

    def stubborn() -> None:
        # (lost, if its keeper, which cannot reach the closed store, declares it so first)
        with contextlib.suppress(LeaseLostError), service.lock("b", timeout="3s"):
            entered.set()
            release.wait(30 * BUSY_S)  # ignores stop_event

    entered = threading.Event()
    worker = threading.Thread(target=stubborn)
    worker.start()
    assert entered.wait(10 * BUSY_S)
    service.close()  # waits its grace (0.5 s for a 3 s lease), then leaves it
    state = other.status("b")[0]
    assert state.taken and state.taken_by == "node-a", "a lease was released under work that still runs"
    release.set()
    worker.join()


def test_closing_the_service_from_inside_its_block_releases_that_lease(service: Service, other: Service) -> None:
    with service.lock("b", timeout="1m"):
        service.close()
        assert not other.status("b")[0].taken
    assert _releases(other, "b") == ["shutdown"]


def test_on_lost_is_called_once_before_the_lease_could_pass_on(service: Service, other: Service) -> None:
    told: list[tuple[str, bool]] = []
    with pytest.raises(LeaseLostError), service.lock("job", timeout="900ms",
                                                     on_lost=lambda r: told.append((r, True))) as held:
        other.force_release("job", reason="test")
        assert held.wait_stopping(10 * BUSY_S) and held.wait_lost(10 * BUSY_S)
    assert len(told) == 1 and "renewal refused" in told[0][0]
    assert held.stopping and held.stop_reason == held.lost_reason


def test_an_unrenewed_lease_is_told_lost_a_grace_before_its_end(service: Service, clock: StoreClock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The keeper's loss instant leaves the block the stop grace exec mode gives its command."""
    from mutexctl import keeper

    monkeypatch.setattr(keeper.Leases, "renew", lambda self, lease: (_ for _ in ()).throw(
        keeper.StoreError("store unreachable")))
    told_at: list[float] = []
    with pytest.raises(LeaseLostError), service.lock("job", timeout="3s",
                                                     on_lost=lambda _r: told_at.append(time.monotonic())) as held:
        ends = held.lease.local_deadline
        assert held.wait_lost(30 * BUSY_S)
    grace = keeper.lease_stop_grace_s(3000)
    assert told_at and keeper.lease_clock() - (time.monotonic() - told_at[0]) <= ends - grace


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_service_and_hands_its_leases_on_at_once(store_url: str, tmp_path: Path,
                                                                   signum: int) -> None:
    out = tmp_path / "told"
    holder = _service_life(store_url, "main", out)
    with Service(Settings(node_id="waiter", store=store_url)) as waiter:
        got: list[float] = []
        thread = threading.Thread(target=lambda: got.append(
            time.monotonic() if waiter.acquire("b", timeout="5s", wait=f"{LEASE_S}s") else 0))
        thread.start()
        wait_until(lambda: waiter.status("b")[0].waiters, timeout=10 * BUSY_S)
        sent = time.monotonic()
        holder.send_signal(signum)
        assert holder.wait(timeout=30 * BUSY_S) == 128 + signum, holder.stderr.read() if holder.stderr else ""
        thread.join(LEASE_S)
        assert got, "the waiter did not get the lease"
        handed_over = got[0] - sent
        assert handed_over < LEASE_S / 4, handed_over  # at the release, not at the lease's end
        name = signal.Signals(signum).name
        assert out.read_text() == f"told: shutdown on {name}\n"
        for mutex in ("p", "s", "b"):
            assert f"shutdown on {name}" in _releases(waiter, mutex), mutex
        assert not waiter.status("p")[0].taken and not waiter.status("s")[0].slots
        assert waiter.status("s")[0].kind in (SEMAPHORE, "exclusive")


def test_sigterm_stops_a_block_in_a_worker_thread_before_its_lease_is_released(store_url: str,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "told"
    holder = _service_life(store_url, "thread", out)
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=30 * BUSY_S) == 143
    # (the callback and the worker, woken by stop_event, run in two threads: either line may come first)
    assert sorted(out.read_text().splitlines()) == ["told: shutdown on SIGTERM", "worker left its block"]
    with Service(Settings(node_id="after", store=store_url)) as after:
        assert not after.status("b")[0].taken and "shutdown on SIGTERM" in _releases(after, "b")


def test_the_interpreter_s_exit_releases_what_a_service_left_held(store_url: str, tmp_path: Path) -> None:
    holder = _service_life(store_url, "exit", tmp_path / "told")
    assert holder.wait(timeout=30 * BUSY_S) == 0
    with Service(Settings(node_id="after", store=store_url)) as after:
        assert not after.status("p")[0].taken and _releases(after, "p") == ["shutdown"]


def test_status_tells_a_service_s_lease_from_the_cli_s_and_exec_mode_s(cli: Cli, store_url: str) -> None:
    """The holder stamp says how the lease is held; an exited service is told as one."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    holder = subprocess.Popen([sys.executable, str(HELPERS / "hold.py"), store_url, "svc-job", "1h", "svc"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None and holder.stdout.readline()
    assert cli("acquire", "cli-job", "--timeout", "1h").returncode == 0
    job = cli.popen("acquire", "exec-job", "--timeout", "1h", "--", "sleep", "60")
    with Service(Settings(node_id="reader", store=store_url)) as reader:
        wait_until(lambda: reader.status("exec-job") and reader.status("exec-job")[0].taken, timeout=10 * BUSY_S)
        shown = json.loads(cli("--json", "status").stdout)["mutexes"]
        held_as = {m["mutex"]: m["held_as"] for m in shown}
        assert held_as == {"svc-job": "service", "cli-job": "cli", "exec-job": "exec"}
        running = {m["mutex"]: m["why"] for m in shown}
        assert "(a service) is running" in running["svc-job"]
        holder.kill()  # no release: the service is gone
        holder.wait()
        why = {m["mutex"]: m["why"] for m in json.loads(cli("--json", "status").stdout)["mutexes"]}
        assert why["svc-job"].startswith(f"the service that held it (pid {holder.pid}) has exited on this host")
        assert "normal after acquire without a command" not in why["svc-job"]
    job.terminate()
    job.wait(timeout=30 * BUSY_S)
