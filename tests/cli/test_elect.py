"""``mutexctl elect``: candidates first come first served, the leader runs its command (exec mode's
guarantees) or holds its term, observers see each change once in term order; with real processes,
kill -9 and forced releases, on every store."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from ..conftest import BUSY_S, Cli, pid_alive, wait_until

LEASE_S, POLL_S = 2.0, 1.0  # the term's lease in these tests, and the standby's poll (the default interval)


def _candidate(cli: Cli, tmp_path: Path, who: str, *extra: str) -> subprocess.Popen[str]:
    """A candidate whose command records its term and pid, then runs until stopped."""
    script = f'echo "$MUTEXCTL_FENCE" > {tmp_path}/{who}.term; echo $$ > {tmp_path}/{who}.pid; exec sleep 600'
    return cli.popen("elect", "primary", "--value", who, "--timeout", f"{LEASE_S:g}s", *extra, "--", "sh", "-c",
                     script, env={"MUTEXCTL_NODE_ID": who})


def _term(tmp_path: Path, who: str) -> int | None:
    path = tmp_path / f"{who}.term"
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


def test_a_standby_leads_within_the_lease_after_the_leader_is_killed(cli: Cli, tmp_path: Path) -> None:
    leader = _candidate(cli, tmp_path, "a")
    wait_until(lambda: _term(tmp_path, "a"), timeout=20 * BUSY_S)
    standby = _candidate(cli, tmp_path, "b")
    try:
        wait_until(lambda: json.loads(cli("--json", "status", "primary").stdout)["mutexes"][0]["waiters"],
                   timeout=20 * BUSY_S)  # in line
        assert _term(tmp_path, "b") is None  # one leader at a time
        killed = time.monotonic()
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=60)
        wait_until(lambda: _term(tmp_path, "b"), timeout=20 * BUSY_S)
        took = time.monotonic() - killed
        assert _term(tmp_path, "b") == _term(tmp_path, "a") + 1  # type: ignore[operator]
        assert took < LEASE_S + POLL_S + 2 * BUSY_S, took  # the lease plus one poll (with room for a busy host)
    finally:
        standby.terminate()
        standby.communicate(timeout=60)


def test_a_deposed_leader_s_command_is_stopped_before_the_next_term_begins(cli: Cli, tmp_path: Path) -> None:
    """Deposed by not renewing (its mutexctl frozen, as a cut-off host's would be): the term passes on only
    after the lease ends, and by then the leader's command is gone (its watcher stops it first)."""
    leader = _candidate(cli, tmp_path, "a")
    wait_until(lambda: _term(tmp_path, "a"), timeout=20 * BUSY_S)
    first_pid = int((tmp_path / "a.pid").read_text())
    # Running, or already killed (a zombie: its frozen mutexctl cannot reap it)? /proc's state field says.
    script = (f's=$(cut -d" " -f3 /proc/{first_pid}/stat 2>/dev/null); '
              f'if [ -n "$s" ] && [ "$s" != Z ]; then echo "overlap $s"; else echo alone; fi > {tmp_path}/b.start; '
              f'echo "$MUTEXCTL_FENCE" > {tmp_path}/b.term')
    standby = cli.popen("elect", "primary", "--value", "b", "--timeout", f"{LEASE_S:g}s", "--", "sh", "-c", script,
                        env={"MUTEXCTL_NODE_ID": "b"})
    try:
        wait_until(lambda: json.loads(cli("--json", "status", "primary").stdout)["mutexes"][0]["waiters"],
                   timeout=20 * BUSY_S)
        leader.send_signal(signal.SIGSTOP)  # nothing renews the term from now on
        standby.communicate(timeout=60)
        assert standby.returncode == 0
        assert (tmp_path / "b.start").read_text().strip() == "alone"  # a's command was gone when b's term began
        assert _term(tmp_path, "b") == _term(tmp_path, "a") + 1  # type: ignore[operator]
    finally:
        leader.send_signal(signal.SIGCONT)
    _, err = leader.communicate(timeout=60)
    assert leader.returncode == 75 and "leadership of 'primary'" in err and "lost" in err, err
    assert not pid_alive(first_pid)


def test_a_forced_release_stops_the_leader_s_command_at_its_next_renewal(cli: Cli, tmp_path: Path) -> None:
    leader = _candidate(cli, tmp_path, "a")
    wait_until(lambda: _term(tmp_path, "a"), timeout=20 * BUSY_S)
    assert cli("release", "primary", "--force", "--reason", "failover drill").returncode == 0
    _, err = leader.communicate(timeout=60)  # (a forced release breaks the term at once: fence the writes)
    assert leader.returncode == 75 and "leadership of 'primary'" in err and "lost" in err, err


def test_observers_see_every_change_once_in_term_order(cli: Cli, tmp_path: Path) -> None:
    observers = [cli.popen("--json", "elect", "primary", "--observe") for _ in range(2)]
    try:
        wait_until(lambda: all(p.poll() is None for p in observers), timeout=5)
        time.sleep(2 * POLL_S)
        for who in ("a", "b", "c"):  # one after another, each leading for longer than a poll
            done = cli("elect", "primary", "--value", who, "--", "sleep", f"{3 * POLL_S:g}",
                       env={"MUTEXCTL_NODE_ID": who})
            assert done.returncode == 0, done.stderr
        time.sleep(3 * POLL_S)
    finally:
        for observer in observers:
            observer.send_signal(signal.SIGINT)
    for observer in observers:
        out, err = observer.communicate(timeout=60)
        assert observer.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        leaders = [(doc["leader"]["node"], doc["leader"]["value"], doc["leader"]["term"]) for doc in lines
                   if doc["leader"] is not None]
        assert [(node, value) for node, value, _ in leaders] == [("a", "a"), ("b", "b"), ("c", "c")], lines
        terms = [term for _, _, term in leaders]
        assert terms == sorted(terms) and len(set(terms)) == 3
        assert lines[0]["leader"] is None and lines[-1]["leader"] is None  # nobody led before, nor after


def test_without_a_command_the_leader_prints_its_term_and_holds_it_until_interrupted(cli: Cli) -> None:
    leader = cli.popen("elect", "primary", "--value", "10.0.0.1", "--timeout", f"{LEASE_S:g}s")
    try:
        assert leader.stdout is not None
        term = int(leader.stdout.readline())
        time.sleep(2 * LEASE_S)  # renewed all along
        observer = cli.popen("--json", "elect", "primary", "--observe")
        assert observer.stdout is not None
        now = json.loads(observer.stdout.readline())["leader"]
        observer.send_signal(signal.SIGINT)
        observer.communicate(timeout=60)
        assert observer.returncode == 0
    finally:
        leader.send_signal(signal.SIGTERM)
    leader.communicate(timeout=60)
    assert leader.returncode == 143  # a signal resigns
    assert term == 1 and (now["node"], now["value"], now["term"]) == ("cli-node", "10.0.0.1", 1)
    assert json.loads(cli("--json", "status", "primary").stdout)["mutexes"][0]["state"] == "free"
