"""``acquire NAME --hold-for PID``: a lease held for a process's lifetime by a detached keeper (flock's
subshell idiom, etcdctl's lock without a command), with real processes: renewed past its timeout while
PID runs, released when PID exits, ended early by its token."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from mutexctl import Service

from ..conftest import BUSY_S, Cli, mutexctl_argv, pid_alive, wait_until


def _state(service: Service, name: str) -> str:
    found = service.status(name)
    return found[0].state if found else "free"


def test_a_lease_lives_as_long_as_the_process_it_is_held_for(cli: Cli, service: Service) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        done = cli("--json", "acquire", "shell-job", "--hold-for", str(sleeper.pid), "--timeout", "2s")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["fence"] == 1 and doc["hold_for"] == sleeper.pid and pid_alive(doc["keeper_pid"])
        held = service.status("shell-job")[0]
        assert held.holder is not None and held.holder.pid == doc["keeper_pid"]
        assert held.holder.command == f"mutexctl --json acquire shell-job --hold-for {sleeper.pid} --timeout 2s"
        time.sleep(3 * 2)  # three lease lengths: renewed all along
        assert _state(service, "shell-job") == "held" and service.status("shell-job")[0].fence == 1
        assert cli("acquire", "shell-job", "-n").returncode == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    wait_until(lambda: _state(service, "shell-job") == "free", timeout=20 * BUSY_S)  # released, not expired
    wait_until(lambda: not pid_alive(doc["keeper_pid"]), timeout=20 * BUSY_S)
    events = [e["event"] for e in json.loads(cli("--json", "history", "shell-job").stdout)["events"]]
    assert events[:2] == ["release", "acquire"], events


def test_a_shell_holds_the_lease_for_its_lifetime(cli: Cli, service: Service) -> None:
    script = ('"$@" acquire build --hold-for $$ --timeout 2s >/dev/null || exit 9; '
              '"$@" acquire build -n -- true; echo "inside: $?"; sleep 5; echo done')
    done = subprocess.run(["sh", "-c", script, "sh", *mutexctl_argv()], env=cli.env, cwd=cli.cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["inside:", "1", "done"], done.stdout + done.stderr
    wait_until(lambda: _state(service, "build") == "free", timeout=20 * BUSY_S)  # the shell exited: released


def test_release_by_token_ends_it_early_and_the_keeper_leaves(cli: Cli, service: Service) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        doc = json.loads(cli("--json", "acquire", "early", "--hold-for", str(sleeper.pid), "--timeout", "3s").stdout)
        assert cli("release", "early", "--token", str(doc["fence"])).returncode == 0
        assert _state(service, "early") == "free"
        wait_until(lambda: not pid_alive(doc["keeper_pid"]), timeout=20 * BUSY_S)  # its next renewal is refused
        assert cli("acquire", "early", "-n", "--", "true").returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_what_cannot_be_held_is_told_by_the_mutexctl_the_user_ran(cli: Cli, service: Service) -> None:
    service.try_acquire("busy", timeout="1h")
    busy = cli("acquire", "busy", "--hold-for", "1")
    assert busy.returncode == 1 and "mutex 'busy' is held by" in busy.stderr, busy.stderr
    assert [line for line in busy.stderr.splitlines() if line.startswith("hint: ")], busy.stderr
    for pid, said in (("999999999", "there is no process 999999999"), ("abc", "is not a process id")):
        bad = cli("acquire", "x", "--hold-for", pid)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr
    assert cli("acquire", "x", "--hold-for", "1", "--", "true").returncode == 2  # a command has its own lifetime
    assert service.status("x") == []
