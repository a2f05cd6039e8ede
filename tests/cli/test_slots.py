"""Semaphores (--limit N), shared/exclusive locks (--shared) and run-once (--once KEY), as users run
them: real processes contending through the CLI, each critical section logging enter/exit on
CLOCK_MONOTONIC, and the invariant checked from the log. On every store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mutexctl import LimitConflictError, Service, Settings

from ..conftest import BUSY_S, HELPERS, Cli, mutexctl_argv, pid_alive, wait_until

SECTION = [sys.executable, str(HELPERS / "section.py")]


def sections(log: Path) -> list[tuple[str, int, int]]:
    """(who, enter ns, exit ns) per critical section, in order of entry."""
    opened: dict[str, int] = {}
    done = []
    for line in log.read_text().splitlines():
        what, who, ns = line.split()
        if what == "enter":
            opened[who] = int(ns)
        else:
            done.append((who, opened.pop(who), int(ns)))
    assert not opened, f"sections never left: {opened}"
    return sorted(done, key=lambda s: s[1])


def most_inside(found: list[tuple[str, int, int]], who: str = "") -> int:
    """The most sections (of those whose name starts with ``who``) inside at one instant."""
    events = sorted([(start, 1) for w, start, _ in found if w.startswith(who)]
                    + [(end, -1) for w, _, end in found if w.startswith(who)], key=lambda e: (e[0], e[1]))
    inside = most = 0
    for _, step in events:
        inside += step
        most = max(most, inside)
    return most


def contenders(cli: Cli, count: int, rounds: int, args: list[str], log: Path, hold_ms: int,
               prefix: str = "c") -> list[subprocess.Popen[str]]:
    """``count`` shell loops, each taking the lock ``rounds`` times through the CLI to run a section."""
    procs = []
    for n in range(count):
        loop = " && ".join(
            f'"$@" {prefix}{n}-{r} {hold_ms}' for r in range(rounds))
        argv = ["sh", "-c", loop, "sh", *mutexctl_argv(), *args, "--", *SECTION, str(log)]
        procs.append(subprocess.Popen(argv, env={**cli.env, "MUTEXCTL_NODE_ID": f"{prefix}{n}"}, cwd=cli.cwd,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]


def test_a_semaphore_never_has_more_than_its_limit_inside(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "sections.log"
    finish(contenders(cli, 5, 3, ["acquire", "pool", "--limit", "2", "--wait", "inf", "--timeout", "5s"], log, 200))
    found = sections(log)
    assert len(found) == 15  # every holder got its turns
    assert most_inside(found) == 2, "never more than 2 inside, and the 2 slots were used together"


def test_writers_exclude_everyone_readers_share_and_writers_are_not_starved(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "sections.log"
    procs = contenders(cli, 4, 4, ["acquire", "book", "--shared", "--wait", "inf", "--timeout", "5s"], log, 250,
                       prefix="r")
    procs += contenders(cli, 2, 2, ["acquire", "book", "--wait", "inf", "--timeout", "5s"], log, 150, prefix="w")
    finish(procs)
    found = sections(log)
    assert len([s for s in found if s[0].startswith("w")]) == 4 and len(found) == 20
    for who, start, end in found:
        if who.startswith("w"):
            others = [o for o in found if o[0] != who and o[1] < end and start < o[2]]
            assert not others, f"writer {who} overlapped {others}"
    assert most_inside(found, "r") >= 2, "readers never shared"


def test_an_exclusive_waiter_is_not_starved_by_overlapping_semaphore_holders(cli: Cli, tmp_path: Path) -> None:
    """Four loops that keep a --limit 2 semaphore from ever being empty: an exclusive waiter announces
    itself and new slots wait for it, so it gets in once the slots held when it asked end (before, it
    waited out its whole wait and exited 1)."""
    log = tmp_path / "sections.log"
    stop = tmp_path / "stop"
    loop = (f'while [ ! -e {stop} ]; do "$@" || exit 1; done')
    slots = [subprocess.Popen(["sh", "-c", loop, "sh", *mutexctl_argv(), "acquire", "pool", "--limit", "2",
                               "--wait", "inf", "--timeout", "5s", "--", *SECTION, str(log), f"s{n}", "400"],
                              env={**cli.env, "MUTEXCTL_NODE_ID": f"s{n}"}, cwd=cli.cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    try:
        wait_until(lambda: log.exists() and {"s0", "s1"} <= {line.split()[1] for line in log.read_text().splitlines()},
                   timeout=30 * BUSY_S)  # both loops inside, their sections overlapping
        asked = time.monotonic()
        writer = cli("acquire", "pool", "--wait", f"{10 * BUSY_S:.0f}s", "--", *SECTION, str(log), "w", "100",
                     env={"MUTEXCTL_NODE_ID": "w"}, timeout=30 * BUSY_S)
        assert writer.returncode == 0, writer.stderr
        # In once the slots held when it asked have ended (400 ms sections) and its next poll came (<= 1 s).
        assert time.monotonic() - asked < 3 * BUSY_S
    finally:
        stop.touch()
        for proc in slots:
            proc.communicate(timeout=60 * BUSY_S)
    found = sections(log)
    [(_, start, end)] = [s for s in found if s[0] == "w"]
    assert not [o for o in found if o[0] != "w" and o[1] < end and start < o[2]], "the writer shared the mutex"


def test_the_once_command_runs_exactly_once_across_8_instances(cli: Cli, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = ["sh", "-c", f'echo "$MUTEXCTL_NODE_ID" >> {ran}; sleep 0.5']
    procs = [cli.popen("acquire", "migrate", "--once", "v42", "--", *command, env={"MUTEXCTL_NODE_ID": f"pod-{i}"})
             for i in range(8)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outs]
    [runner] = ran.read_text().split()
    skipped = [err for _, err in outs if "already done by" in err]
    assert len(skipped) == 7 and all(f"already done by {runner} at " in err for err in skipped)
    again = cli("acquire", "migrate", "--once", "v42", "--json", "--", *command)
    assert again.returncode == 0 and again.stdout == ""
    assert json.loads(again.stderr)["done"]["by_node"] == runner
    assert ran.read_text().split() == [runner]


def test_a_failed_once_run_records_nothing_and_the_next_instance_runs_it(cli: Cli, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    failing = cli.popen("acquire", "migrate", "--once", "v7", "--", "sh", "-c",
                        f"echo failed >> {ran}; sleep 1; exit 3", env={"MUTEXCTL_NODE_ID": "first"})
    time.sleep(0.3)
    waiters = [cli.popen("acquire", "migrate", "--once", "v7", "--", "sh", "-c", f"echo ok-$MUTEXCTL_NODE_ID >> {ran}",
                         env={"MUTEXCTL_NODE_ID": f"next-{i}"}) for i in range(2)]
    failing.communicate(timeout=60)
    assert failing.returncode == 3
    for waiter in waiters:
        waiter.communicate(timeout=60)
        assert waiter.returncode == 0
    lines = ran.read_text().split()
    assert lines[0] == "failed" and len(lines) == 2 and lines[1].startswith("ok-next-")
    status = json.loads(cli("status", "migrate", "--json").stdout)
    assert [(m["key"], m["by_node"]) for m in status["once"]] == [("v7", lines[1].removeprefix("ok-"))]
    cleared = cli("release", "migrate", "--once", "v7", "--force", "--reason", "re-run it")
    assert cleared.returncode == 0 and "cleared 'migrate' --once v7" in cleared.stderr
    rerun = cli("acquire", "migrate", "--once", "v7", "--", "sh", "-c", f"echo rerun >> {ran}")
    assert rerun.returncode == 0 and ran.read_text().split()[-1] == "rerun"


def test_status_shows_the_run_once_markers_of_the_names_asked_and_history_records_a_cleared_one(cli: Cli) -> None:
    for name, key in (("mig", "v1"), ("other", "v2"), ("plain", None)):
        assert cli("acquire", name, *(["--once", key] if key else []), "--", "true").returncode == 0
    for asked, markers in ((["pl*"], []), (["mig"], ["mig"]), (["mig", "plain"], ["mig"]), (["o*", "m*"],
                                                                                             ["mig", "other"])):
        shown = cli("status", *asked)
        assert sorted(line.split()[2] for line in shown.stdout.splitlines() if line.startswith("# once:")) == \
            markers, (asked, shown.stdout)
        document = json.loads(cli("--json", "status", *asked).stdout)
        assert sorted(m["mutex"] for m in document["once"]) == markers, (asked, document["once"])
    cleared = cli("release", "mig", "--once", "v1", "--force", "--reason", "INC-7 rerun")
    assert cleared.returncode == 0, cleared.stderr
    events = json.loads(cli("--json", "history", "mig").stdout)["events"]
    assert events[0]["event"] == "once-cleared", events[0]
    assert (events[0]["previous_holder"], events[0]["previous_fence"]) == ("cli-node", 1), events[0]
    assert events[0]["reason"] == "[once v1] INC-7 rerun" and events[0]["node"] == "cli-node"
    table = cli("history", "mig").stdout.splitlines()
    assert table[1].split()[1:3] == ["mig", "once-cleared"] and "reason: [once v1] INC-7 rerun" in table[1]
    assert [e["event"] for e in json.loads(cli("--json", "history", "other").stdout)["events"]] == \
        ["release", "acquire"]  # (only the cleared one)


def test_a_killed_holder_s_slot_frees_only_when_its_lease_ends(cli: Cli, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    holder = cli.popen("acquire", "pool", "--limit", "1", "--timeout", "2s", "--", "sh", "-c",
                       f"echo $$ > {pid_file}; exec sleep 60")
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20)
    command = int(pid_file.read_text())
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    killed = time.monotonic()
    assert wait_until(lambda: not pid_alive(command), timeout=5)  # the watcher took the command with it
    assert cli("acquire", "pool", "--limit", "1", "-n").returncode == 1  # the slot is still held
    taken = cli("acquire", "pool", "--limit", "1", "--wait", "10s", "--json")
    assert taken.returncode == 0, taken.stderr
    assert time.monotonic() - killed > 0.8  # freed by its end (2 s after its last renewal), not at once


def test_status_shows_every_holder_and_force_release_ends_one_on_the_record(cli: Cli) -> None:
    tokens = [cli("acquire", "pool", "--limit", "3", "--timeout", "1h",
                  env={"MUTEXCTL_NODE_ID": f"n{i}"}).stdout.strip() for i in range(2)]
    assert tokens == ["1", "2"]
    text = cli("status", "pool").stdout.splitlines()
    assert text[1].split()[:2] == ["pool", "2/3"] and [line.split()[2] for line in text[2:4]] == ["n0", "n1"]
    assert "2 of 3 slots held" in cli("status", "pool").stdout
    document = json.loads(cli("status", "pool", "--json").stdout)["mutexes"][0]
    assert (document["kind"], document["limit"], document["held_slots"]) == ("semaphore", 3, 2)
    assert [(h["node"], h["fence"]) for h in document["holders"]] == [("n0", 1), ("n1", 2)]
    conflict = cli("acquire", "pool", "--limit", "5")
    assert conflict.returncode == 6 and "held as a semaphore of 3" in conflict.stderr
    assert cli("acquire", "pool", "--shared").returncode == 6
    forced = cli("release", "pool", "--force", "--reason", "INC-9", "--holder", "n0", "--json")
    assert forced.returncode == 0 and [e["node"] for e in json.loads(forced.stdout)["ended"]] == ["n0"]
    document = json.loads(cli("status", "pool", "--json").stdout)
    assert [h["node"] for h in document["mutexes"][0]["holders"]] == ["n1"]
    assert [(f["previous_holder"], f["reason"]) for f in document["forced_releases"]] == [("n0", "INC-9")]
    assert cli("release", "pool", "--token", "2", env={"MUTEXCTL_NODE_ID": "n1"}).returncode == 0
    assert json.loads(cli("status", "pool", "--json").stdout)["mutexes"][0]["state"] == "free"


def test_an_exclusive_ask_of_a_semaphore_or_shared_holds_is_told_how_it_is_held(cli: Cli) -> None:
    assert cli("acquire", "sem3", "--limit", "3", "--timeout", "1h", env={"MUTEXCTL_NODE_ID": "n0"}).returncode == 0
    refused = cli("acquire", "sem3")  # 1 of 3 held: not "all 3 slots are held"
    lines = refused.stderr.splitlines()
    assert refused.returncode == 1 and len(lines) == 2, refused.stderr
    assert "'sem3' is a semaphore with 1 of its 3 slots held (by n0)" in lines[0] and "all 3" not in lines[0]
    assert "an exclusive hold waits until every slot has ended" in lines[0]
    assert lines[1].startswith("hint: take one of its slots with --limit 3, or wait for every slot"), lines[1]
    waited = cli("acquire", "sem3", "--wait", "1s")
    assert waited.returncode == 1 and "1 of its 3 slots held" in waited.stderr, waited.stderr
    assert "every slot has ended" in waited.stderr and "gave up after 1s" in waited.stderr
    document = json.loads(cli("--json", "acquire", "sem3").stdout)["error"]
    assert document["kind"] == "held" and "--limit 3" in document["hint"]
    for node in ("n1", "n2"):
        assert cli("acquire", "sem3", "--limit", "3", "--timeout", "1h", env={"MUTEXCTL_NODE_ID": node}).returncode == 0
    full = cli("acquire", "sem3", "--limit", "3")  # a slot asked of a full semaphore: that is what it says
    assert full.returncode == 1 and "all 3 slots held (by n0, n1, n2)" in full.stderr, full.stderr
    assert "the next slot ends in" in full.stderr and "wait for it with --wait" in full.stderr
    assert cli("acquire", "rw", "--shared", "--timeout", "1h").returncode == 0
    reader = cli("acquire", "rw")
    assert reader.returncode == 1 and "'rw' has 1 shared holder" in reader.stderr, reader.stderr
    assert "hint: take a shared hold with --shared, or wait for every holder" in reader.stderr


def test_a_slot_asked_while_a_writer_waits_is_told_the_writer_goes_first(cli: Cli) -> None:
    assert cli("acquire", "sem3", "--limit", "3", "--timeout", "1h", env={"MUTEXCTL_NODE_ID": "n0"}).returncode == 0
    writer = cli.popen("acquire", "sem3", "--wait", "1h", "--", "true", env={"MUTEXCTL_NODE_ID": "w"})
    try:
        def told() -> str | None:
            if json.loads(cli("--json", "status", "sem3").stdout)["mutexes"][0]["writer_waiting"] != "w":
                return None  # (not announced yet, or between two of its polls)
            done = cli("acquire", "sem3", "--limit", "3", "--timeout", "1h", env={"MUTEXCTL_NODE_ID": "n1"})
            if done.returncode == 0:  # its announcement lapsed between the two reads: give the slot back
                back = cli("release", "sem3", "--token", done.stdout.strip(), env={"MUTEXCTL_NODE_ID": "n1"})
                assert back.returncode == 0, back.stderr
            return done.stderr if "waits to take it" in done.stderr else None
        said = str(wait_until(told, timeout=20 * BUSY_S))
        assert "1 of its 3 slots held (by n0) and w waits to take it exclusively: new slots wait for it" in said, said
    finally:
        writer.kill()
        writer.communicate(timeout=20 * BUSY_S)


def test_a_slot_in_token_mode_is_renewed_and_released_by_its_fence(cli: Cli) -> None:
    token = cli("acquire", "pool", "--limit", "2", "--timeout", "2s").stdout.strip()
    renewed = cli("renew", "pool", "--token", token, "--timeout", "1h", "--json")
    assert renewed.returncode == 0, renewed.stderr
    assert json.loads(renewed.stdout)["timeout_ms"] == 3_600_000
    assert cli("release", "pool", "--token", "99").returncode == 3
    assert cli("release", "pool").returncode == 0  # the seed's V: this node's one token-mode slot


def test_bad_slot_flags_are_usage_errors(cli: Cli) -> None:
    for args in (["--limit", "0"], ["--limit", "1001"], ["--limit", "2", "--shared"], ["--once", "v1"]):
        done = cli("acquire", "x", *args)
        assert done.returncode == 2 and done.stderr.startswith("mutexctl: "), (args, done.stderr)
    assert cli("release", "x", "--holder", "a").returncode == 2
    assert cli("acquire", "x", "--once", "", "--", "true").returncode == 2


def test_the_library_holds_slots_shared_locks_and_runs_once(settings: Settings) -> None:
    with Service(settings) as svc, Service(settings._replace(node_id="other")) as other:
        with svc.lock("pool", limit=2, timeout="5s") as first, other.lock("pool", limit=2, timeout="5s") as second:
            assert first.lease.kind == "semaphore" and {first.fence, second.fence} == {1, 2}
            with pytest.raises(LimitConflictError):
                svc.try_acquire("pool", limit=3)
        with svc.lock("book", shared=True) as reader, other.lock("book", shared=True):
            assert reader.lease.kind == "shared"
        ran = []

        def work(held: object) -> None:
            ran.append(held)

        done = svc.run_once("migrate", "v1", work)
        assert other.run_once("migrate", "v1", work) == done and len(ran) == 1 and done.by_node == svc.node_id

        def fail(held: object) -> None:
            raise RuntimeError("migration failed")

        with pytest.raises(RuntimeError):
            svc.run_once("migrate", "v2", fail)
        assert svc.once_done("migrate", "v2") is None
        assert other.run_once("migrate", "v2", work).by_node == "other"


def test_the_library_waiters_of_run_once_return_the_marker_without_running(settings: Settings) -> None:
    ran = []
    started = threading.Event()

    def slow(held: object) -> None:
        started.set()
        time.sleep(0.5)
        ran.append("slow")

    with Service(settings) as svc, Service(settings._replace(node_id="other")) as other:
        runner = threading.Thread(target=svc.run_once, args=("m", "k", slow))
        runner.start()
        started.wait(10)
        marker = other.run_once("m", "k", lambda held: ran.append("other"))
        runner.join(10)
    assert ran == ["slow"] and marker.by_node == settings.node_id


def test_a_forced_release_of_one_slot_stops_that_holder_s_command_only(cli: Cli) -> None:
    jobs = {node: cli.popen("acquire", "pool", "--limit", "2", "--timeout", "3s", "--", "sleep", "30",
                            env={"MUTEXCTL_NODE_ID": node}) for node in ("a", "b")}
    def holders() -> int:
        mutexes = json.loads(cli("status", "pool", "--json").stdout).get("mutexes")  # (none: no store made yet)
        return len(mutexes[0]["holders"]) if mutexes else 0

    wait_until(lambda: holders() == 2, timeout=20)
    assert cli("release", "pool", "--force", "--reason", "INC-3", "--holder", "a").returncode == 0
    _, err = jobs["a"].communicate(timeout=20)  # its next renewal is at most 1 s away
    assert jobs["a"].returncode == 75 and "was lost" in err
    assert jobs["b"].poll() is None  # the other slot's command runs on
    jobs["b"].send_signal(signal.SIGTERM)
    jobs["b"].communicate(timeout=20)
