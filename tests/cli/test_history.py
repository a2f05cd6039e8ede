"""The lease history (`mutexctl history`, `svc.history`) on both stores: every kind of event with
its numbers, from real processes — a holder killed with kill -9, a waiter that takes over, a forced
release, a loss a running command notices, refused releases and renewals — and the filters."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mutexctl.config import Settings
from mutexctl.service import Service

from ..conftest import Cli, wait_until


def events(cli: Cli, *args: str) -> list[dict[str, object]]:
    done = cli("--json", "history", *args)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["events"]
    assert isinstance(found, list)
    return list(reversed(found))  # oldest first, for reading the story


def until_held(cli: Cli, proc: subprocess.Popen[str], name: str, node: str) -> None:
    """Wait until ``proc`` (an ``acquire … -- CMD``) holds ``name``; if it ended instead, say why."""
    def holding() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"acquire exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        return held_by(cli, name, node)

    wait_until(holding, timeout=20)


def held_by(cli: Cli, name: str, node: str) -> bool:
    done = cli("--json", "status", name)
    if done.returncode == 78 and "does not exist" in done.stdout:
        return False  # the holder has not made the store yet
    docs = json.loads(done.stdout)["mutexes"]
    return bool(docs) and docs[0]["state"] == "held" and docs[0]["taken_by"] == node


def test_a_contended_story_is_recorded_event_by_event(cli: Cli, tmp_path: Path) -> None:
    # a: holds m with a running command, then is killed with kill -9 (its lease runs out)
    # (a 3 s lease: renewed every second, so a busy machine does not make a lose it before the kill)
    holder = cli.popen("acquire", "m", "--node-id", "a", "--timeout", "3s", "--", "sleep", "60")
    until_held(cli, holder, "m", "a")
    # b: waits for m, and takes it over once a's lease has ended
    started = time.monotonic()
    waiter = cli.popen("acquire", "m", "--node-id", "b", "--wait", "30s", "--timeout", "5s", "--", "sleep", "0.3")
    time.sleep(0.5)
    # (MongoDB writes the history off the hot path, within 100 ms: a kill sooner could lose a's acquire)
    wait_until(lambda: any(e["node"] == "a" for e in events(cli, "m")), timeout=10)
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert waiter.wait(30) == 0, waiter.stderr.read() if waiter.stderr else ""
    b_took = time.monotonic() - started
    # c: takes m for a script (token mode); an operator breaks it; d tries to release what it does not hold
    assert cli("acquire", "m", "--node-id", "c", "--timeout", "1m").returncode == 0
    assert cli("release", "m", "--node-id", "d").returncode == 3
    assert cli("renew", "m", "--node-id", "d", "--token", "99").returncode != 0
    time.sleep(0.2)
    forced = cli("release", "m", "--force", "--reason", "stuck: see mongodb://u:hunter2@h/")
    assert forced.returncode == 0, forced.stderr

    story = events(cli, "m")
    assert [(e["event"], e["node"]) for e in story] == [
        ("acquire", "a"), ("takeover", "b"), ("release", "b"), ("acquire", "c"), ("refused", "d"), ("refused", "d"),
        ("forced", "cli-node")]
    a, takeover, release, c, refused_release, refused_renew, force = story
    assert a["fence"] == 1 and a["waited_ms"] == 0 and a["command"] == "sleep 60" and a["pid"]
    # the take-over names what it took over and how late after that lease's end it came
    assert takeover["fence"] == 2 and takeover["previous_holder"] == "a" and takeover["previous_fence"] == 1
    assert isinstance(takeover["late_ms"], int) and 0 <= takeover["late_ms"] < 5000
    # b waited from its start until a's lease ran out: more than the half second before the kill
    assert isinstance(takeover["waited_ms"], int) and 500 <= takeover["waited_ms"] <= b_took * 1000
    assert takeover["command"] == "sleep 0.3"
    assert release["fence"] == 2 and isinstance(release["held_ms"], int) and 300 <= release["held_ms"] < 5000
    assert c["fence"] == 3 and c["command"].startswith("mutexctl acquire m")
    assert refused_release["reason"].startswith("release: ") and "held by c" in refused_release["reason"]
    assert refused_renew["reason"].startswith("renew: ") and refused_renew["fence"] == 99
    assert force["previous_holder"] == "c" and force["previous_fence"] == 3
    assert isinstance(force["held_ms"], int) and force["held_ms"] >= 200
    assert "hunter2" not in json.dumps(story) and force["reason"].startswith("stuck")
    # every time is the store's, in order
    times = [e["at"] for e in story]
    assert times == sorted(times)

    # the table: newest first, and the summary line on-call reads first
    table = cli("history", "m")
    lines = table.stdout.splitlines()
    assert lines[0].startswith("TIME (STORE)") and " forced " in lines[1] and " acquire " in lines[-3]
    summary = lines[-1]
    assert summary.startswith("# 7 events; longest hold ") and "longest wait " in summary
    assert f"({'m'}, b," in summary.split("longest wait")[1]  # b waited longest
    longest = max((e for e in story if e["held_ms"] is not None), key=lambda e: e["held_ms"])
    assert longest["event"] in ("release", "forced")


def test_a_loss_the_running_command_notices_is_recorded(cli: Cli) -> None:
    job = cli.popen("acquire", "job", "--node-id", "a", "--timeout", "3s", "--", "sleep", "60")
    until_held(cli, job, "job", "a")
    assert cli("release", "job", "--force", "--reason", "test").returncode == 0
    assert job.wait(30) == 75
    story = events(cli, "job")
    assert [e["event"] for e in story] == ["acquire", "forced", "lost"]
    lost = story[-1]
    assert lost["node"] == "a" and lost["fence"] == 1 and "refused" in lost["reason"]


def test_filters_by_name_glob_node_time_and_limit(cli: Cli) -> None:
    for name, node in (("deploy-a", "n1"), ("deploy-b", "n2"), ("other", "n1")):
        assert cli("acquire", name, "--node-id", node, "--", "true").returncode == 0
    assert {e["mutex"] for e in events(cli, "deploy-*")} == {"deploy-a", "deploy-b"}
    assert {e["mutex"] for e in events(cli, "other", "deploy-b")} == {"other", "deploy-b"}
    assert {e["mutex"] for e in events(cli, "--node", "n1")} == {"deploy-a", "other"}
    assert len(events(cli, "--limit", "3")) == 3
    assert events(cli, "--limit", "3")[-1]["mutex"] == "other"  # the newest
    assert len(events(cli, "--since", "1h")) == 6
    time.sleep(0.3)
    assert events(cli, "--since", "100ms") == []
    assert events(cli, "nothing-*") == []
    empty = cli("history", "nothing")
    assert empty.returncode == 0 and empty.stdout.splitlines()[-1] == "# 0 events"


@pytest.mark.parametrize("args", [("--since", "soon"), ("--limit", "0"), ("--limit", "1000001"), ("$bad",),
                                  ("--node", "")])
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    done = cli("history", *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") <= 2


def test_the_library_reads_the_same_history(settings: Settings) -> None:
    with Service(settings) as svc:
        with svc.lock("lib", timeout="10s", wait="1s"):
            pass
        found = svc.history(["lib"])
    assert [e.kind for e in found] == ["release", "acquire"]
    assert found[0].held_ms is not None and found[1].waited_ms == 0 and found[0].fence == found[1].fence == 1


def test_a_library_process_that_exits_at_once_keeps_its_history(store_url: str, cli: Cli) -> None:
    """MongoDB writes the history after the operation (acquire and release stay one round trip each):
    what a process queued is written when it exits in order, even right after its last release."""
    import subprocess
    import sys

    code = (f"import mutexctl; svc = mutexctl.connect(store={store_url!r}, node_id='lib');"
            "[svc.release('quick', token=svc.try_acquire('quick', timeout='10s').fence) for _ in range(3)]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [e["event"] for e in events(cli, "quick")] == ["acquire", "release"] * 3


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_history_retention_is_a_ttl_applied_by_init_schema_on_mongodb(cli: Cli, store_url: str) -> None:
    import pymongo

    def kept() -> int:
        with pymongo.MongoClient(store_url) as client:
            return int(client.get_default_database()["history"].index_information()["at_ttl"]["expireAfterSeconds"])

    assert cli("init-schema").returncode == 0
    assert kept() == 30 * 24 * 3600
    shorter = {"MUTEXCTL_HISTORY_RETENTION": "36h"}
    dry = cli("init-schema", "--dry-run", env=shorter)
    assert dry.returncode == 0 and "would change lease history retention 30d00h -> 36h00m" in dry.stdout, dry.stdout
    assert kept() == 30 * 24 * 3600
    done = cli("--json", "init-schema", env=shorter)
    assert json.loads(done.stdout)["history_retention_change"] == {"before_s": 30 * 24 * 3600, "after_s": 36 * 3600}
    assert kept() == 36 * 3600
    assert "nothing to do" in cli("init-schema", env=shorter).stdout


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_prunes_what_is_older_than_the_retention(cli: Cli, store_url: str) -> None:
    """SQLite has no TTL index: the writers prune what is older than history_retention as it grows."""
    import sqlite3

    assert cli("acquire", "m", "--", "true").returncode == 0  # creates the store and its history table
    path = store_url.removeprefix("sqlite://")
    with sqlite3.connect(path) as db:  # 250 events of two days ago, as if written then
        db.executemany("INSERT INTO history (mutexId, kind, at, node) VALUES ('old', 'acquire', "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days'), 'n')", [()] * 250)
    code = ("import sys, mutexctl\n"
            "svc = mutexctl.connect(store=sys.argv[1], node_id='n')\n"
            "[svc.release('m', token=svc.try_acquire('m', timeout='10s').fence) for _ in range(10)]\n")
    import subprocess
    import sys

    env = {**cli.env, "MUTEXCTL_HISTORY_RETENTION": "1d"}
    done = subprocess.run([sys.executable, "-c", code, store_url], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = events(cli, "--limit", "1000")
    assert {e["mutex"] for e in found} == {"m"} and len(found) == 22  # the old ones are gone, the new ones kept
