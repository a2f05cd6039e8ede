"""Real processes against a real store: mutual exclusion under contention, and crash expiry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mutexctl import LockHeldError, Service

from ..conftest import BUSY_S, HELPERS, pid_alive, wait_until

PROCESSES = 4
CYCLES = 200


def _contend(store_url: str, counter: Path, mode: str, processes: int, cycles: int) -> list[int]:
    counter.write_text("0")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    procs = [subprocess.Popen([sys.executable, str(HELPERS / "contend.py"), store_url, "counter", str(cycles),
                               str(counter), mode], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(processes)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    return [int(out) for out in outputs]


def test_mutual_exclusion_holds_for_four_processes_of_200_contended_cycles(store_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    done = _contend(store_url, counter, "locked", PROCESSES, CYCLES)
    assert sum(done) == PROCESSES * CYCLES
    assert int(counter.read_text()) == PROCESSES * CYCLES, "an update was lost: two holders overlapped"


def test_the_unlocked_control_loses_updates_so_the_test_above_can_fail(store_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    done = _contend(store_url, counter, "unlocked", PROCESSES, CYCLES)
    assert sum(done) == PROCESSES * CYCLES
    assert int(counter.read_text()) < PROCESSES * CYCLES


def test_a_holder_killed_by_sigkill_frees_the_mutex_after_its_timeout_and_not_before(
        store_url: str, service: Service) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    lease_s = 3.0  # long enough that the first try below surely comes inside it, on a busy machine too
    holder = subprocess.Popen([sys.executable, str(HELPERS / "hold.py"), store_url, "crash", f"{lease_s}s", "victim"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None
    before_acquire, fence = holder.stdout.readline().split()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pytest.raises(LockHeldError):  # dead, but its lease still runs
        service.try_acquire("crash", timeout="5s")
    assert time.monotonic() - float(before_acquire) < lease_s

    def take() -> object:
        try:
            return service.try_acquire("crash", timeout="5s")
        except LockHeldError:
            return None

    lease = wait_until(take, timeout=lease_s + BUSY_S, interval=0.01)
    waited = time.monotonic() - float(before_acquire)
    assert lease_s <= waited < lease_s + BUSY_S
    assert lease.fence == int(fence) + 1


@pytest.mark.parametrize("mode", ["group", "handler"])
def test_a_command_never_runs_if_mutexctl_dies_before_its_watcher_starts(mode: str, tmp_path: Path) -> None:
    """Exec mode and broadcast handlers start a command, then its watcher: a SIGKILL in between must
    not leave the command running unwatched (past its lease). The control shows the window is real."""
    for variant, should_run in (("gated", False), ("ungated", True)):
        marker, pid_file = tmp_path / f"{variant}.ran", tmp_path / f"{variant}.pid"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
        helper = subprocess.run([sys.executable, str(HELPERS / "start_then_die.py"), mode, variant, str(marker),
                                 str(pid_file)], env=env, timeout=60 * BUSY_S, capture_output=True)
        assert helper.returncode == -signal.SIGKILL, helper.stderr
        started = int(pid_file.read_text())
        wait_until(lambda pid=started: not pid_alive(pid), timeout=10 * BUSY_S)  # it ran to its end, or never ran
        assert marker.exists() is should_run, variant
