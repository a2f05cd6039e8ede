"""Broadcast keeps its promise: no message lost to a restart or a skewed clock, nothing written by a
refused send, handlers bounded and visible, and on-call can see who listens. On every store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mutexctl import NoListenersError, Service, Settings

from ..conftest import Cli, mutexctl_argv, pid_alive, store_rows, wait_until

FAST = {"MUTEXCTL_POLL_INTERVAL": "100ms"}
EIGHT_DAYS = timedelta(days=8)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init-schema").returncode == 0
    return cli


def _sender(settings: Settings, node: str = "sender") -> Service:
    return Service(settings._replace(node_id=node))


# -- 1. a node that registered gets every later message, however long it was away -------------------


def test_a_listener_stopped_before_it_saved_a_position_gets_all_150_messages_sent_meanwhile(
        ready: Cli, settings: Settings) -> None:
    first = ready.popen("listen", "--", "true", env={**FAST, "MUTEXCTL_NODE_ID": "L9"})
    with _sender(settings) as sender:
        wait_until(lambda: "L9" in sender.store.live_nodes("default", 30), timeout=20)
        first.send_signal(signal.SIGTERM)  # like `timeout 3 mutexctl listen`: gone before any message
        assert first.wait(timeout=20) == 0
        sent = [sender.broadcast("ping").id for _ in range(150)]
    done = ready("listen", "--once", "-q", "--", "true", env={"MUTEXCTL_NODE_ID": "L9"})
    assert done.returncode == 0, done.stderr
    status = ready("broadcast", "status", sent[0], "--json")
    assert status.returncode == 0, status.stdout
    assert [a["node"] for a in json.loads(status.stdout)["acked"]] == ["L9"]
    with _sender(settings) as sender:
        assert all(sender.store.acked("L9", [m]) == {m} for m in sent)  # every one of the 150


def test_a_brand_new_node_gets_what_is_sent_after_it_first_listens_and_from_start_gets_the_rest(
        ready: Cli, settings: Settings) -> None:
    with _sender(settings) as sender:
        before = sender.broadcast("before")
        registered = ready("listen", "--once", env={"MUTEXCTL_NODE_ID": "new"})
        assert registered.returncode == 0 and registered.stdout == ""  # what was sent before: not for it
        after = sender.broadcast("after")
    done = ready("listen", "--once", env={"MUTEXCTL_NODE_ID": "new"})
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [after.id]
    everything = ready("listen", "--once", "--from-start", env={"MUTEXCTL_NODE_ID": "new"})
    assert [json.loads(line)["id"] for line in everything.stdout.splitlines()] == [before.id]  # acked ones not again


# -- 2. times on the store's clock ----------------------------------------------------------------------


@contextmanager
def shifted_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> Iterator[None]:
    """This process's wall clock, as mutexctl's code reads it, ``by`` off (a sender with a wrong clock)."""
    real = datetime

    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return real.now(tz) + by

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def, override]
            return real.utcnow() + by

    with monkeypatch.context() as patch:
        for name, module in list(sys.modules.items()):
            if name.startswith("mutexctl") and getattr(module, "datetime", None) is real:
                patch.setattr(module, "datetime", Skewed)
        patch.setattr("mutexctl.models.utcnow", lambda: real.now(UTC) + by)
        yield


def _near_now(moment: datetime, store_now: datetime) -> bool:
    return abs(moment - store_now) < timedelta(minutes=1)


def test_senders_with_clocks_8_days_off_lose_no_message_and_stamp_the_store_s_time(
        ready: Cli, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with _sender(settings, "listener") as listener:
        assert list(listener.listen(once=True)) == []  # registers
    with _sender(settings) as sender:
        sent = [sender.broadcast("on-time")]
        with shifted_clock(monkeypatch, EIGHT_DAYS):
            ahead = _sender(settings, "ahead")
            sent.append(ahead.broadcast("from-the-future"))  # its prune must not take the others
            assert "listener" in ahead.store.live_nodes("default", 30)  # liveness on the store's clock
            ahead.close()
        with shifted_clock(monkeypatch, -EIGHT_DAYS):
            behind = _sender(settings, "behind")
            sent.append(behind.broadcast("from-the-past"))  # retention must not take it at once
            behind.close()
        sent.append(sender.broadcast("on-time-again"))  # SQLite prunes on this write
        store_now, _ = sender.nodes()
        assert all(_near_now(m.at, store_now) for m in sent), [m.at for m in sent]
        stored = [sender.store.get_message(m.id) for m in sent]
        assert all(m is not None and _near_now(m.at, store_now) for m in stored)
    with _sender(settings, "listener") as listener:
        got = []
        for message in listener.listen(once=True):
            got.append(message.action)
    assert got == ["on-time", "from-the-future", "from-the-past", "on-time-again"]


def test_acks_heartbeats_and_forced_release_records_are_stamped_on_the_store_s_clock(
        ready: Cli, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with _sender(settings, "skewed") as skewed:
        assert list(skewed.listen(once=True)) == []  # registers: the next message is for it
    with _sender(settings) as sender:
        message = sender.broadcast("x")
        sender.try_acquire("stuck", timeout="1h")
        with shifted_clock(monkeypatch, -EIGHT_DAYS):
            skewed = _sender(settings, "skewed")
            for _ in skewed.listen(include_self=False, once=True):
                pass
            skewed.force_release("stuck", reason="INC-1")
            skewed.close()
        store_now, nodes = sender.nodes()
        [ack] = sender.store.acks(message.id)
        [record] = sender.forced_releases("stuck")
        [node] = [n for n in nodes if n.node == "skewed"]
    assert _near_now(ack.at, store_now) and _near_now(record.at, store_now) and _near_now(node.last_seen, store_now)


# -- 3 and 4. a refused send writes nothing ---------------------------------------------------------------


def test_a_refused_payload_takes_no_number(ready: Cli, settings: Settings, store_url: str) -> None:
    with _sender(settings) as sender:
        before = store_rows(store_url)
        with pytest.raises(ValueError, match="lone surrogate"):
            sender.broadcast("x", '"\\ud800"')
        assert store_rows(store_url) == before
        assert sender.broadcast("x").id == "default:1"


def test_binary_stdin_is_one_line_exit_2_and_nothing_written(ready: Cli, store_url: str) -> None:
    before = store_rows(store_url)
    started = time.monotonic()
    done = subprocess.run([*mutexctl_argv(), "broadcast", "x", "--payload", "-"], input=b"\xff\xfe\x00binary",
                          capture_output=True, env=ready.env, cwd=ready.cwd, timeout=60)
    assert done.returncode == 2 and b"is not UTF-8 text" in done.stderr and done.stderr.count(b"\n") <= 2
    assert time.monotonic() - started < 10 and store_rows(store_url) == before


def test_what_listen_prints_is_strict_json(ready: Cli) -> None:
    assert ready("broadcast", "x", "--payload", '{"big": 18446744073709551615, "f": 1e300, "s": "\\ud83d\\ude00"}'
                 ).returncode == 0
    done = ready("listen", "--once", "--from-start", "--include-self")

    def strict(name: str) -> None:
        raise ValueError(name)

    [line] = done.stdout.splitlines()
    assert json.loads(line, parse_constant=strict)["payload"] == {"big": 2**64 - 1, "f": 1e300, "s": "😀"}


# -- 5. handlers bounded and visible ------------------------------------------------------------------------


def test_listen_logs_one_line_per_handled_message_quiet_keeps_failures_json_gives_json_lines(ready: Cli) -> None:
    node = {"MUTEXCTL_NODE_ID": "a"}
    assert ready("listen", "--once", env=node).returncode == 0  # "a" registers: later messages are for it
    handler = ["--", "sh", "-c", 'cat >/dev/null; [ "$MUTEXCTL_ACTION" = ok ]']

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        ready("broadcast", "ok")
        ready("broadcast", "bad")
        done = ready("listen", "--once", *flags, *handler, env=node)
        assert done.returncode == 0, done.stderr
        return done

    text, quiet, as_json = run(), run("-q"), run("--json")
    lines = text.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("default:1 ok from cli-node: status 0 in ")
    assert lines[1].startswith("default:2 bad from cli-node: FAILED with status 1 in ")
    assert [line.split(": ", 1)[1].split(" in ")[0] for line in quiet.stderr.splitlines()] == ["FAILED with status 1"]
    records = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert [(r["id"], r["action"], r["sender"], r["status"], r["timed_out"]) for r in records] == [
        ("default:5", "ok", "cli-node", 0, False), ("default:6", "bad", "cli-node", 1, False)]
    assert all(isinstance(r["duration_ms"], int) for r in records)


def test_a_hung_handler_is_stopped_at_its_timeout_with_its_group_and_acked_as_failed(
        ready: Cli, settings: Settings, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    assert ready("listen", "--once", env={"MUTEXCTL_NODE_ID": "worker"}).returncode == 0
    script = f'sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait'
    ready("broadcast", "hang")
    started = time.monotonic()
    done = ready("listen", "--once", "--handler-timeout", "1s", "--", "sh", "-c", script,
                 env={"MUTEXCTL_NODE_ID": "worker"}, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 0 and "TIMED OUT after" in done.stderr and "status 124" in done.stderr, done.stderr
    assert took < 30
    assert not any(pid_alive(int(p)) for p in pids.read_text().split())  # the handler's group is gone
    report = json.loads(ready("broadcast", "status", "default:1", "--json").stdout)
    assert [(a["node"], a["status"]) for a in report["failed"]] == [("worker", 124)]


def test_sigterm_lets_the_running_handler_finish_then_listen_exits_0(ready: Cli, settings: Settings,
                                                                      tmp_path: Path) -> None:
    mark = tmp_path / "finished"
    listener = ready.popen("listen", "--", "sh", "-c", f"cat >/dev/null; sleep 1.5; touch {mark}",
                           env={**FAST, "MUTEXCTL_NODE_ID": "L"})
    with _sender(settings) as sender:
        wait_until(lambda: "L" in sender.store.live_nodes("default", 30), timeout=20)
        message = sender.broadcast("work")
        wait_until(lambda: _handler_running(listener.pid), timeout=20)
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(timeout=30) == 0
        assert mark.exists()
        assert [(a.node, a.status) for a in sender.store.acks(message.id)] == [("L", 0)]


def test_kill_9_of_listen_takes_its_handler_with_it(ready: Cli, settings: Settings, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    listener = ready.popen("listen", "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 300",
                           env={**FAST, "MUTEXCTL_NODE_ID": "L"})
    with _sender(settings) as sender:
        wait_until(lambda: "L" in sender.store.live_nodes("default", 30), timeout=20)
        sender.broadcast("work")
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20)
        handler = int(pid_file.read_text())
        assert pid_alive(handler)
        listener.kill()
        listener.wait(timeout=10)
        assert wait_until(lambda: not pid_alive(handler), timeout=10)


def _handler_running(pid: int) -> bool:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return children.exists() and bool(children.read_text().split())


# -- 6. who listens ------------------------------------------------------------------------------------------


def test_nodes_lists_each_listener_with_its_heartbeat_on_the_store_s_clock_and_its_place(
        ready: Cli, settings: Settings) -> None:
    with _sender(settings) as sender:
        sender.broadcast("one")
    assert ready("listen", "--once", env={"MUTEXCTL_NODE_ID": "api-2"}).returncode == 0
    ready("broadcast", "two")
    assert ready("listen", "--once", "--channel", "ops", env={"MUTEXCTL_NODE_ID": "api-3"}).returncode == 0
    done = ready("nodes", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    nodes = {(n["channel"], n["node"]): n for n in document["nodes"]}
    assert set(nodes) == {("default", "api-2"), ("ops", "api-3")}
    api2 = nodes["default", "api-2"]
    assert api2["live"] and api2["position"] == 1 and api2["latest"] == 2 and api2["behind"] == 1
    assert api2["pid"] and api2["host"] and 0 <= api2["seen_ago_ms"] < 60_000
    text = ready("nodes", "--channel", "default")
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["CHANNEL", "NODE", "HOST"] and lines[1].split()[:2] == ["default", "api-2"]
    assert len(lines) == 3 and lines[2].startswith("# store: ")


def test_wait_acks_with_no_listener_says_so_sends_nothing_and_exits_1_unless_allow_none(
        ready: Cli, store_url: str) -> None:
    before = store_rows(store_url)
    done = ready("broadcast", "reload", "--wait-acks", "-w", "2s")
    assert done.returncode == 1 and "no node listens on channel 'default'" in done.stderr, done.stderr
    assert "--allow-none" in done.stderr and store_rows(store_url) == before
    as_json = ready("broadcast", "reload", "--wait-acks", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["kind"] == "no_listeners"
    allowed = ready("broadcast", "reload", "--wait-acks", "--allow-none")
    assert allowed.returncode == 0 and allowed.stdout.strip() == "default:1"


def test_the_library_refuses_a_broadcast_nobody_would_answer_only_when_asked(ready: Cli,
                                                                              settings: Settings) -> None:
    with _sender(settings) as sender:
        with pytest.raises(NoListenersError):
            sender.broadcast("x", require_listeners=True)
        assert sender.broadcast("x").expected == ()
