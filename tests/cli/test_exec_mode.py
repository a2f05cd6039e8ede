"""``mutexctl acquire NAME -- CMD``: exact statuses, signals, renewal, and stopping on loss."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mutexctl import Service, Settings

from ..conftest import BUSY_S, HELPERS, Cli, mutexctl_argv, pid_alive, start_job, wait_until


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


@pytest.mark.parametrize(("args", "argv"), [
    (["mx1", "sh", "-c", "echo $0 $1", "-la", "/x"], "-la /x"),  # (ls -la: -l is not ours)
    (["mx1", "sh", "-c", "echo $0 $1", "--timeout", "5s"], "--timeout 5s"),  # after the word: the command's
    (["-t", "1m", "mx1", "-w1s", "-E", "3", "sh", "-c", "echo $MUTEXCTL_FENCE $0", "--json"], "1 --json"),
    (["mx1", "--timeout=1m", "-nE", "3", "sh", "-c", "echo $0 $1", "--", "x"], "-- x"),  # a later -- is its own
])
def test_a_command_given_without_double_dash_owns_every_word_from_its_first(cli: Cli, args: list[str],
                                                                            argv: str) -> None:
    done = cli("acquire", *args)
    assert (done.returncode, done.stdout.strip()) == (0, argv), done.stderr
    assert cli("--json", "status", "mx1").returncode == 0  # (the lease was released: it is free)


def test_an_unknown_option_before_the_command_hints_where_the_command_goes(cli: Cli) -> None:
    done = cli("acquire", "-la", "mx1")
    assert done.returncode == 2 and "No such option: -l" in done.stderr
    assert "hint: a command to run goes after NAME, or after '--'" in done.stderr, done.stderr


def test_a_nested_acquire_of_the_enclosing_lease_runs_at_once_without_taking_it_again(cli: Cli) -> None:
    nested = [*mutexctl_argv(), "acquire", "job", "-n", "--", "sh", "-c", 'echo "inner $MUTEXCTL_FENCE"; exit 7']
    done = cli("acquire", "job", "--timeout", "1m", "--", *nested)  # -n: it would exit 1 if it tried to take it
    assert (done.returncode, done.stdout) == (7, "inner 1\n"), done.stderr
    token = cli("acquire", "job", "--", *mutexctl_argv(), "--json", "acquire", "job")  # token mode: the fence
    assert token.returncode == 0 and json.loads(token.stdout) == {"ok": True, "mutex": "job", "fence": 2,
                                                                  "reentered": True}, token.stdout
    slot = cli("acquire", "pool", "--limit", "2", "--", *mutexctl_argv(), "acquire", "pool", "--limit", "2", "--",
               "sh", "-c", "echo $MUTEXCTL_FENCE")
    assert (slot.returncode, slot.stdout) == (0, "1\n"), slot.stderr
    other_kind = cli("acquire", "pool", "--limit", "2", "--", *mutexctl_argv(), "acquire", "pool", "--", "true")
    assert other_kind.returncode == 1  # an exclusive ask inside a slot is no re-entry: it is refused as ever
    other_name = cli("acquire", "a", "--", *mutexctl_argv(), "acquire", "b", "--", "sh", "-c", "echo $MUTEXCTL_FENCE")
    assert (other_name.returncode, other_name.stdout) == (0, "1\n")  # b is taken for real (its own fence)
    assert json.loads(cli("--json", "status", "job").stdout)["mutexes"][0]["fence"] == 2  # never taken again


def test_inherited_variables_that_do_not_match_a_live_lease_of_ours_take_nothing(cli: Cli, service: Service) -> None:
    assert cli("acquire", "held", "--timeout", "1h").stdout.strip() == "1"
    forged = {"MUTEXCTL_LOCK_HELD": "1", "MUTEXCTL_MUTEX_ID": "held", "MUTEXCTL_FENCE": "7"}
    assert cli("acquire", "held", "--", "echo", "in", env=forged).returncode == 1  # the wrong fence
    service.try_acquire("theirs", timeout="1h")  # node-a's, fence 1
    borrowed = {**forged, "MUTEXCTL_MUTEX_ID": "theirs", "MUTEXCTL_FENCE": "1"}
    assert cli("acquire", "theirs", "--", "echo", "in", env=borrowed).returncode == 1  # another node's
    other_user = {**forged, "MUTEXCTL_FENCE": "1", "LOGNAME": "mallory", "USER": "mallory"}
    assert cli("acquire", "held", "--", "echo", "in", env=other_user).returncode == 1  # another user's


def test_flock_s_and_consul_s_spellings_work(cli: Cli, service: Service) -> None:
    shell = cli("acquire", "job", "-c", 'echo "in $MUTEXCTL_FENCE"; exit 4')  # flock -c, consul -shell
    assert (shell.returncode, shell.stdout) == (4, "in 1\n"), shell.stderr
    assert cli("acquire", "job", "--shell", "exit 0").returncode == 0
    reader = cli("acquire", "rw", "-s", "--timeout", "1h")  # flock -s: shared
    assert reader.returncode == 0 and cli("acquire", "rw", "-s", "--", "true").returncode == 0  # two readers
    for spelling in ("-x", "-e", "--exclusive"):  # an exclusive ask waits for the readers: --nb gives up at once
        for nonblocking in ("--nb", "--nonblocking", "-n"):
            assert cli("acquire", "rw", spelling, nonblocking, "--", "true").returncode == 1, (spelling, nonblocking)
    assert cli("acquire", "rw", "-x", "-s").returncode == 2  # two ways at once
    assert cli("acquire", "job", "-c", "true", "--", "true").returncode == 2  # two commands


def test_no_stdin_leaves_a_while_read_loop_its_input(cli: Cli) -> None:
    loop = ('printf "a\\nb\\nc\\n" | while read line; do "$@" acquire job --no-stdin -- sh -c "cat; echo ran"; '
            'echo "line $line"; done')
    done = subprocess.run(["sh", "-c", loop, "sh", *mutexctl_argv()], env=cli.env, cwd=cli.cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["ran", "line", "a", "ran", "line", "b", "ran", "line", "c"], done.stdout
    eaten = subprocess.run(["sh", "-c", loop.replace(" --no-stdin", ""), "sh", *mutexctl_argv()], env=cli.env,
                           cwd=cli.cwd, capture_output=True, text=True, timeout=120)
    assert eaten.stdout.split() == ["b", "c", "ran", "line", "a"], eaten.stdout  # (what --no-stdin is for)
    assert cli("acquire", "job", "--no-stdin").returncode == 2  # nothing to give stdin to


def test_verbose_tells_the_wait_and_the_hold_as_flock_s_does(cli: Cli) -> None:
    done = cli("-v", "acquire", "job", "--", "sh", "-c", "sleep 0.2; exit 3")
    line = [text for text in done.stderr.splitlines() if text.startswith("mutexctl: waited ")]
    assert done.returncode == 3 and len(line) == 1, done.stderr
    assert re.fullmatch(r"mutexctl: waited \S+ for 'job' \(fence 1\), held it \S+; the command exited with 3",
                        line[0]), line
    record = json.loads(cli("--json", "acquire", "job", "--", "true").stderr.strip().splitlines()[-1])
    assert record["status"] == 0 and record["waited_ms"] >= 0 and record["held_ms"] >= 0
    assert "waited" not in cli("acquire", "job", "--", "true").stderr  # quiet without -v


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
    assert "hint: see 'mutexctl history job' for who ended it" in err and "outages" not in err, err
    assert not pid_alive(grandchild)


def test_sigkill_of_mutexctl_kills_the_command_s_whole_group_at_once_not_at_the_lease_s_end(
        cli: Cli, tmp_path: Path, service: Service) -> None:
    lease_s = 20.0
    proc, grandchild = start_job(cli, tmp_path, "--timeout", f"{lease_s:.0f}s")
    proc.kill()
    proc.wait()
    killed_at = time.monotonic()
    # The watcher sees EOF on mutexctl's pipe and kills the group then, not at the lease's deadline
    # (which it would also enforce): well inside the lease, even on a busy machine.
    wait_until(lambda: not pid_alive(grandchild), timeout=BUSY_S, interval=0.01)
    assert time.monotonic() - killed_at < lease_s / 2
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


class Terminal:
    """An interactive bash on a pseudo-terminal, with job control, as a user at a prompt has it."""

    def __init__(self, cli: Cli) -> None:
        import pty

        env = {**cli.env, "PS1": "$ ", "TERM": "dumb", "HISTFILE": "/dev/null",
               "PATH": f"{Path(mutexctl_argv()[0]).parent}:{cli.env.get('PATH', '/usr/bin:/bin')}"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a session leader with the pty as its controlling terminal
            os.chdir(cli.cwd)
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.output = b""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, marker: str, timeout: float = 20) -> str:
        """Read until ``marker`` appears after what earlier expects consumed; returns the text up to it."""
        deadline = time.monotonic() + timeout
        while marker.encode() not in self.output:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, min(0.2, deadline - time.monotonic())))
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:  # EIO: the terminal's last user exited
                    break
            elif time.monotonic() > deadline:
                break
        head, found, self.output = self.output.partition(marker.encode())
        assert found, f"{marker!r} not seen in {head.decode(errors='replace')!r}"
        return head.decode(errors="replace")

    def close(self) -> None:
        """Kill everything in the terminal's session: bash and any job a failed test left behind."""
        for pid in self._session():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)

    def _session(self) -> list[int]:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
                if int(fields[3]) == self.pid:
                    members.append(int(stat.parent.name))
        return members


@pytest.fixture
def terminal(cli: Cli) -> Iterator[Terminal]:
    term = Terminal(cli)
    term.expect("$ ")
    yield term
    term.close()


def test_an_interactive_command_gets_the_terminal(terminal: Terminal) -> None:
    """Like flock(1), a command that reads the terminal works (its group becomes the foreground)."""
    terminal.send("mutexctl acquire tty -- sh -c 'read line; echo got:$line'; echo rc=$?\n")
    terminal.send("hello\n")  # the tty buffers it until the command reads
    terminal.expect("got:hello")
    terminal.expect("rc=0")


def test_a_command_that_cannot_start_on_a_terminal_gives_127_and_the_prompt_back(terminal: Terminal) -> None:
    terminal.send("mutexctl acquire job -- no-such-command-here; echo rc=$?\n")
    terminal.expect("command not found: no-such-command-here")
    terminal.expect("rc=127")
    terminal.send("read line; echo got:$line\n")  # the shell has the terminal again
    terminal.send("hello\n")
    terminal.expect("got:hello")


def test_ctrl_z_suspends_the_job_and_fg_resumes_it_with_the_lease_kept(terminal: Terminal, cli: Cli) -> None:
    terminal.send("mutexctl acquire job --timeout 1h -- sh -c 'echo $((6*7))-started; read line; echo got:$line'\n")
    terminal.expect("42-started")
    terminal.send("\x1a")  # Ctrl-Z
    terminal.expect("Stopped")
    terminal.send("echo $((6*7))-prompt-is-back\n")  # the shell has its terminal again
    terminal.expect("42-prompt-is-back")
    assert cli("acquire", "job", "-n").returncode == 1  # suspended, but the lease holds for its timeout
    why = [line for line in cli("status", "job").stdout.splitlines() if line.startswith("# job:")]
    assert why and "is suspended (Ctrl-Z or SIGSTOP): nothing renews the lease" in why[0], why  # not "running"
    terminal.send("fg\n")
    terminal.send("hello\n")  # read by the resumed command: it has the terminal again
    terminal.expect("got:hello")
    terminal.send("echo rc=$?\n")
    terminal.expect("rc=0")
    assert cli("acquire", "job", "-n").returncode == 0  # released at the end


def test_ctrl_c_while_waiting_ends_the_waiting_line_with_one_line_saying_so(terminal: Terminal, cli: Cli) -> None:
    assert cli("acquire", "busy", "--timeout", "1h").returncode == 0
    terminal.send("mutexctl acquire busy --wait 1h; echo rc=$?\n")
    terminal.expect("waiting: ")
    terminal.expect("[waited ")  # the live line is drawn
    terminal.send("\x03")  # Ctrl-C, as typed
    said = terminal.expect("rc=130")
    lines = [line.rsplit("\x1b[K", 1)[-1] for line in said.replace("\r", "").split("\n")]
    told = [line for line in lines if line.startswith("mutexctl: interrupted (Ctrl-C)")]
    assert told == ["mutexctl: interrupted (Ctrl-C); the wait was given up and nothing was taken"], said
    assert not [line for line in lines if "waiting:" in line and "rc=" in line], said  # no prompt glued to it


def test_a_background_job_that_reads_the_terminal_stops_until_fg(terminal: Terminal) -> None:
    terminal.send("mutexctl acquire job -- sh -c 'read line; echo got:$line' &\n")
    terminal.send("echo $((6*7))-launched\n")
    terminal.expect("42-launched")
    for _ in range(40):  # ask until the command has tried to read (bash reports it with `jobs`)
        terminal.send("jobs\n")
        with contextlib.suppress(AssertionError):
            terminal.expect("Stopped", timeout=0.5)  # "(tty input)": the whole job, as for any background reader
            break
    else:
        pytest.fail("the job was never reported stopped")
    terminal.send("fg\n")
    terminal.send("hello\n")
    terminal.expect("got:hello")
    terminal.send("echo rc=$?\n")
    terminal.expect("rc=0")


def test_a_job_suspended_past_its_lease_is_killed_not_resumed(terminal: Terminal, cli: Cli) -> None:
    # The commands use shell builtins only after the marker: a Ctrl-Z that lands while sh vforks a
    # program stops the vfork child before its exec, and sh cannot stop until it execs (under any shell).
    terminal.send("mutexctl acquire job --timeout 2s -- sh -c 'echo $((6*7))-started; read x; echo $((6*7))-resumed'\n")
    terminal.expect("42-started")
    terminal.send("\x1a")
    terminal.expect("Stopped")
    # Nothing renews a suspended lease: it expires and another process takes the mutex.
    wait_until(lambda: cli("acquire", "job", "--timeout", "1h").returncode == 0, timeout=20, interval=0.5)
    terminal.send("fg\n")
    head = terminal.expect("lost")  # mutexctl's one line: the lease was lost, the command stopped
    said = terminal.expect("hint: ") + terminal.expect("\n")
    terminal.send("echo rc=$?\n")
    terminal.expect("rc=75")
    assert "suspended (Ctrl-Z) until its lease could have expired: it was ended, not resumed" in said, said
    assert "killed" not in said and "resume a suspended job (fg) before its lease runs out" in said, said
    assert "42-resumed" not in head + terminal.output.decode(errors="replace")
    assert [s.taken_by for s in Service(Settings(node_id="t", store=cli.store_url)).status("job")] == ["cli-node"]


def test_a_failure_while_waiting_on_the_command_stops_the_keeper_and_the_command(
        service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mutexctl.exec.group import CommandGroup

    pidfile = tmp_path / "pid"

    def failing_wait(self: CommandGroup, may_resume: object = None) -> int:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20)
        raise RuntimeError("waitpid failed")

    monkeypatch.setattr(CommandGroup, "wait", failing_wait)
    with pytest.raises(RuntimeError, match="waitpid failed"):
        service.run("job", ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout="3s")
    assert [t.name for t in threading.enumerate() if t.name.startswith("mutexctl-keeper")] == []
    wait_until(lambda: not pid_alive(int(pidfile.read_text())), timeout=10)  # its group went with it


def _section_argv(log: Path, who: str, hold_ms: int) -> list[str]:
    return [sys.executable, str(HELPERS / "interop_side.py"), "section", who, str(log), str(hold_ms)]


def _sections(log: Path) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        what, who, ns = line.split()
        times.setdefault(f"{what} {who}", []).append(int(ns))
    return times


def test_a_frozen_mutexctl_cannot_let_its_command_outlive_the_lease(cli: Cli, other: Service, tmp_path: Path) -> None:
    log = tmp_path / "sections"
    proc = cli.popen("acquire", "job", "--timeout", "1s", "--", *_section_argv(log, "frozen", 20_000))
    wait_until(lambda: log.exists() and "enter frozen" in log.read_text(), timeout=20)
    os.kill(proc.pid, signal.SIGSTOP)  # a debugger, a throttled container: mutexctl cannot run
    try:
        other.acquire("job", timeout="5s", wait="15s")
        taken = time.monotonic_ns()
        times = _sections(log)
        assert "exit frozen" in times, "the command still ran when the lease passed on"
        assert times["exit frozen"][0] < taken
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=20)
    assert proc.returncode == 75


def _tree(root: int) -> list[int]:
    """``root`` and every process below it (by parent pid), as pkill would find them."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def test_pkill_9_f_mutexctl_takes_the_command_with_it(cli: Cli, tmp_path: Path) -> None:
    """What an operator types. (Limited to this job's processes, as the test runner may match too.)"""
    proc, grandchild = start_job(cli, tmp_path, "--timeout", "1m")
    wait_until(lambda: len(_tree(proc.pid)) >= 4, timeout=20)  # mutexctl, the watcher, sh, sleep
    matching = [pid for pid in _tree(proc.pid)
                if "mutexctl" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert proc.pid in matching
    for pid in matching:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=20)
    wait_until(lambda: not pid_alive(grandchild), timeout=10)


def test_a_lease_too_short_to_run_a_command_under_is_refused_before_it_runs(cli: Cli, service: Service,
                                                                            tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = cli("acquire", "job", "--timeout", "1ms", "--", "touch", str(marker))
    assert done.returncode == 2 and "ends before a command could run under it" in done.stderr
    assert "--timeout 1s or more" in done.stderr and not marker.exists()
    assert [s.state for s in service.status("job")] == ["free"]
    assert cli("acquire", "job", "--timeout", "300ms", "--", "touch", str(marker)).returncode == 0
    assert marker.exists()
