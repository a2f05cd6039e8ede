"""``mutexctl acquire NAME -- CMD``: exact statuses, signals, renewal, and stopping on loss."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from mutexctl import Service

from .conftest import Cli, pid_alive, start_job, wait_until


def test_the_command_s_exact_exit_status_is_returned(cli: Cli) -> None:
    assert cli("acquire", "job", "--", "sh", "-c", "exit 7").returncode == 7
    assert cli("acquire", "job", "--", "true").returncode == 0


def test_a_command_killed_by_signal_n_gives_128_plus_n(cli: Cli) -> None:
    assert cli("acquire", "job", "--", "sh", "-c", "kill -USR1 $$").returncode == 128 + signal.SIGUSR1


def test_the_command_sees_the_lease_in_its_environment(cli: Cli) -> None:
    done = cli("acquire", "job", "--", "sh", "-c", 'echo "$MUTEXCTL_MUTEX_ID $MUTEXCTL_NODE_ID '
               '$MUTEXCTL_FENCE $MUTEXCTL_LOCK_HELD"')
    assert done.stdout.strip() == "job cli-node 1 1"


def test_the_lease_is_released_when_the_command_ends(cli: Cli, service: Service) -> None:
    cli("acquire", "job", "--", "sh", "-c", "exit 3")
    assert service.status("job")[0].state == "free"


def test_a_missing_command_gives_127_and_releases_the_lease(cli: Cli, service: Service) -> None:
    done = cli("acquire", "job", "--", "no-such-command-here")
    assert done.returncode == 127 and "command not found" in done.stderr
    assert service.status("job")[0].state == "free"


def test_the_command_does_not_run_while_another_node_holds_the_mutex(cli: Cli, service: Service,
                                                                      tmp_path: Path) -> None:
    service.try_acquire("job", timeout="1h")
    marker = tmp_path / "ran"
    done = cli("acquire", "job", "--", "touch", str(marker))
    assert done.returncode == 1 and not marker.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1])
def test_signals_sent_to_mutexctl_reach_the_command_s_grandchildren(cli: Cli, tmp_path: Path, sig: int) -> None:
    pidfile = tmp_path / "grandchild"
    # the inner sh writes its pid and becomes `sleep`: a grandchild of mutexctl, in the foreground of sh
    proc = cli.popen("acquire", "job", "--", "sh", "-c", f"sh -c 'echo $$ > {pidfile}; exec sleep 100'; exit 0")
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10))
    proc.send_signal(sig)
    proc.communicate(timeout=10)
    wait_until(lambda: not pid_alive(grandchild), timeout=5)
    assert proc.returncode == 128 + sig  # sh died of the forwarded signal too


def test_a_forwarded_sigterm_reaches_background_grandchildren(cli: Cli, tmp_path: Path) -> None:
    proc, grandchild = start_job(cli, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    wait_until(lambda: not pid_alive(grandchild), timeout=5)
    assert proc.returncode == 128 + signal.SIGTERM


def test_a_forwarded_signal_the_command_handles_gives_its_own_status(cli: Cli, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = cli.popen("acquire", "job", "--", "sh", "-c",
                     f"trap 'exit 5' USR2; touch {ready}; while :; do sleep 0.05; done")
    wait_until(ready.exists, timeout=10)
    proc.send_signal(signal.SIGUSR2)
    proc.communicate(timeout=10)
    assert proc.returncode == 5


def test_a_command_running_three_times_its_timeout_keeps_its_lease(cli: Cli, service: Service) -> None:
    proc = cli.popen("acquire", "job", "--timeout", "1s", "--", "sleep", "3")
    wait_until(lambda: service.status("job") and service.status("job")[0].state == "held", timeout=10)
    seen = []
    while proc.poll() is None:
        state = service.status("job")[0]
        seen.append((state.state, state.taken_by, state.fence))
        time.sleep(0.1)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    while seen and seen[-1][0] == "free":  # released as the command ended
        seen.pop()
    assert len(seen) >= 10 and set(seen) == {("held", "cli-node", 1)}  # never expired, over 3x the timeout


def test_a_forced_release_from_another_process_stops_the_command_with_75(cli: Cli, tmp_path: Path) -> None:
    proc, grandchild = start_job(cli, tmp_path, "--timeout", "3s")
    forced = cli("release", "job", "--force", "--reason", "test: break it")
    assert forced.returncode == 0
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 75, err
    assert "lost" in err and "stopped" in err
    assert not pid_alive(grandchild)


def test_sigkill_of_mutexctl_kills_the_command_s_whole_group_within_a_second(cli: Cli, tmp_path: Path,
                                                                            service: Service) -> None:
    proc, grandchild = start_job(cli, tmp_path, "--timeout", "10s")
    proc.kill()
    proc.wait()
    killed_at = time.monotonic()
    wait_until(lambda: not pid_alive(grandchild), timeout=1.0, interval=0.01)
    assert time.monotonic() - killed_at < 1.0
    assert service.status("job")[0].state == "held"  # nobody released it: it expires on its own


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # a server outage: test_mongodb.py
def test_an_unreachable_store_stops_the_command_before_its_lease_could_expire(cli: Cli, store_url: str,
                                                                               tmp_path: Path) -> None:
    proc, grandchild = start_job(cli, tmp_path, "--timeout", "1500ms")
    blocker = sqlite3.connect(store_url.removeprefix("sqlite://"), isolation_level=None, timeout=10)
    blocker.execute("BEGIN EXCLUSIVE")  # every renewal now waits on the write lock
    blocked_at = time.monotonic()
    try:
        expires_ns = blocker.execute("SELECT expiresNs FROM mutexes WHERE mutexId='job'").fetchone()[0]
        boot_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        lease_ends_at = blocked_at + (expires_ns - boot_ns) / 1e9
        wait_until(lambda: not pid_alive(grandchild), timeout=5, interval=0.005)
        assert time.monotonic() < lease_ends_at, "the command outlived the lease"
        proc.communicate(timeout=10)
        assert proc.returncode == 75
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_forced_release_stops_a_long_lease_s_command_within_seconds(cli: Cli, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = cli.popen("acquire", "job", "--timeout", "1h", "--", "sh", "-c", f"touch {ready}; sleep 100")
    wait_until(ready.exists, timeout=10)
    forced_at = time.monotonic()
    assert cli("release", "job", "--force", "--reason", "test").returncode == 0
    proc.communicate(timeout=30)
    assert proc.returncode == 75
    assert time.monotonic() - forced_at < 5 + 2  # one renewal interval (capped at 5 s) plus slack


def test_an_interactive_command_gets_the_terminal(cli: Cli) -> None:
    """Like flock(1), a command that reads the terminal works (its group becomes the foreground)."""
    import pty

    from .conftest import mutexctl_argv

    argv = [*mutexctl_argv(), "acquire", "tty", "--", "sh", "-c", "read line; echo got:$line"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader with the pty as its controlling terminal
        os.execve(argv[0], argv, cli.env)
    os.write(fd, b"hello\n")  # the tty buffers it until the command reads
    output = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b"got:" not in output:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the terminal's last user exited
            break
        output += chunk
    if b"got:" not in output:
        os.kill(pid, signal.SIGKILL)  # stopped on SIGTTIN, as without the hand-over
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"got:hello" in output, output
    assert os.waitstatus_to_exitcode(status) == 0
