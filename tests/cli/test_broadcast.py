"""Intracom: broadcast and listen, per-node acks, no lost messages, on every store."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import pytest
from mutexctl import Service, Settings
from mutexctl.models import Message, utcnow

from ..conftest import Cli, store_rows, wait_until

FAST = {"MUTEXCTL_POLL_INTERVAL": "100ms"}


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init-schema").returncode == 0
    return cli


def _listener(cli: Cli, node: str, log: Path, *extra: str, command: str | None = None):  # type: ignore[no-untyped-def]
    """A `mutexctl listen` process whose handler appends 'id action payload' lines to ``log``."""
    script = command or f'printf "%s %s %s\\n" "$MUTEXCTL_MESSAGE_ID" "$MUTEXCTL_ACTION" "$(cat)" >> {log}'
    return cli.popen("listen", *extra, "--", "sh", "-c", script, env={**FAST, "MUTEXCTL_NODE_ID": node})


def _registered(service: Service, *nodes: str) -> None:
    wait_until(lambda: set(nodes) <= set(service.store.live_nodes("default", 30)), timeout=20)


def test_broadcast_prints_the_message_id_and_listeners_run_the_handler(ready: Cli, service: Service,
                                                                         tmp_path: Path) -> None:
    log = tmp_path / "log"
    listener = _listener(ready, "api-2", log)
    try:
        _registered(service, "api-2")
        done = ready("broadcast", "reload-cache", "--payload", '{"cache": "users"}', "--wait-acks", "-w", "20s")
        assert done.returncode == 0, done.stderr
        message_id = done.stdout.strip()
        assert message_id == "default:1"
        assert log.read_text() == 'default:1 reload-cache {"cache":"users"}\n'
        assert "acked by api-2: status 0" in done.stderr
    finally:
        listener.terminate()
        listener.wait(timeout=10)
    assert listener.returncode == 0


def test_without_a_command_listen_prints_one_json_line_per_message(ready: Cli) -> None:
    ready("broadcast", "a", "--payload", "[1, 2]")
    ready("broadcast", "b")
    done = ready("listen", "--from-start", "--once", "--include-self")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(m["action"], m["payload"], m["seq"]) for m in lines] == [("a", [1, 2], 1), ("b", {}, 2)]


def test_the_sender_s_own_node_is_excluded_unless_asked(ready: Cli) -> None:
    ready("broadcast", "mine")
    assert ready("listen", "--from-start", "--once").stdout == ""
    assert "mine" in ready("listen", "--from-start", "--once", "--include-self").stdout


def test_to_limits_who_handles_and_who_is_waited_for(ready: Cli, service: Service, tmp_path: Path) -> None:
    log_a, log_b = tmp_path / "a", tmp_path / "b"
    listeners = [_listener(ready, "a", log_a), _listener(ready, "b", log_b)]
    try:
        _registered(service, "a", "b")
        done = ready("broadcast", "only-b", "--to", "b", "--wait-acks", "-w", "20s", "--json")
        assert done.returncode == 0, done.stdout
        document = json.loads(done.stdout)
        assert document["message"]["expected"] == ["b"] and [a["node"] for a in document["acked"]] == ["b"]
        time.sleep(0.5)  # a's polls (every 100 ms) have seen the message by now
        assert not log_a.exists() and "only-b" in log_b.read_text()
    finally:
        for listener in listeners:
            listener.terminate()
            listener.wait(timeout=10)


def test_wait_acks_exits_5_listing_failed_handlers_and_1_listing_silent_nodes(ready: Cli, service: Service,
                                                                             tmp_path: Path) -> None:
    failing = _listener(ready, "bad", tmp_path / "x", command="cat >/dev/null; exit 3")
    try:
        _registered(service, "bad")
        done = ready("broadcast", "go", "--wait-acks", "-w", "20s")
        assert done.returncode == 5 and "failed on bad (status 3)" in done.stderr
        done = ready("broadcast", "go", "--to", "bad", "--to", "ghost", "--wait-acks", "-w", "1s")
        assert done.returncode == 5 and "no answer from ghost" in done.stderr
    finally:
        failing.terminate()
        failing.wait(timeout=10)
    done = ready("broadcast", "go", "--to", "ghost", "--wait-acks", "-w", "500ms")
    assert done.returncode == 1 and "no answer from ghost" in done.stderr
    status = ready("broadcast", "status", done.stdout.strip(), "--json")
    assert status.returncode == 1 and json.loads(status.stdout)["silent"] == ["ghost"]


def test_the_handler_gets_the_message_in_its_environment_and_stdin(ready: Cli, tmp_path: Path) -> None:
    out = tmp_path / "env"
    ready("broadcast", "rotate", "--channel", "ops.keys", "--payload", '{"k": "v"}')
    done = ready("listen", "--channel", "ops.keys", "--from-start", "--once", "--include-self", "--", "sh", "-c",
                 f'echo "$MUTEXCTL_MESSAGE_ID|$MUTEXCTL_ACTION|$MUTEXCTL_SENDER|$MUTEXCTL_CHANNEL|$(cat)" > {out}')
    assert done.returncode == 0
    assert out.read_text() == 'ops.keys:1|rotate|cli-node|ops.keys|{"k":"v"}\n'


def test_payload_from_a_file_and_from_stdin(ready: Cli, tmp_path: Path) -> None:
    file = tmp_path / "p.json"
    file.write_text('{"from": "file"}')
    ready("broadcast", "a", "--payload", f"@{file}")
    ready("broadcast", "b", "--payload", "-", input='{"from": "stdin"}')
    lines = ready("listen", "--from-start", "--once", "--include-self").stdout.splitlines()
    assert [json.loads(line)["payload"] for line in lines] == [{"from": "file"}, {"from": "stdin"}]


@pytest.mark.parametrize(("label", "args", "stdin"), [
    ("invalid JSON", ["--payload", "{nope"], None),
    ("invalid JSON on stdin", ["--payload", "-"], "[1,"),
    ("payload over 1 MiB", ["--payload", "-"], json.dumps("x" * (1024 * 1024))),
    ("missing payload file", ["--payload", "@/nonexistent/p.json"], None),
    ("channel with a space", ["--channel", "my channel"], None),
    ("channel with a colon", ["--channel", "a:b"], None),
    ("empty channel", ["--channel", ""], None),
    ("bad --to node", ["--to", ""], None),
    ("NaN", ["--payload", '{"a": NaN}'], None),
    ("Infinity", ["--payload", "[-Infinity]"], None),
    ("a number out of a double's range", ["--payload", '{"a": 1e400}'], None),
    ("a 5000-digit integer", ["--payload", "1" * 5000], None),
    ("100k-deep arrays", ["--payload", "-"], "[" * 100_000 + "]" * 100_000),
    ("101-deep objects", ["--payload", "-"], '{"a":' * 101 + "1" + "}" * 101),
    ("a lone surrogate escape", ["--payload", '{"a": "\\ud800"}'], None),
])
def test_bad_broadcast_input_gives_one_line_exit_2_and_writes_nothing(ready: Cli, store_url: str, label: str,
                                                                     args: list[str], stdin: str | None) -> None:
    before = store_rows(store_url)
    done = ready("broadcast", "reload", *args, input=stdin)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("mutexctl: ") and len(lines) <= 2 and "Traceback" not in done.stderr
    assert store_rows(store_url) == before


def test_an_unknown_message_id_and_an_uninitialized_store_are_refused(cli: Cli) -> None:
    assert cli("broadcast", "reload").returncode == 4  # no schema yet
    cli("init-schema")
    done = cli("broadcast", "status", "default:99")
    assert done.returncode == 1 and "no message 'default:99' in the log" in done.stderr
    malformed = cli("broadcast", "status", "x" * 100_000)
    assert malformed.returncode == 2 and "is not a message id" in malformed.stderr and len(malformed.stderr) < 300


def test_a_message_committed_after_a_later_one_is_not_skipped(ready: Cli, settings: Settings) -> None:
    sender = Service(Settings(node_id="sender", store=settings.store))
    listener = Service(Settings(node_id="listener", store=settings.store, poll_interval_s=0.05))
    handled: list[str] = []
    listener.listen(handler=lambda m: handled.append(m.action) or 0, once=True)  # registers: starts at now
    # Sender 1 takes number 1 but has not inserted its message yet; sender 2 sends number 2 in full.
    slow_seq = sender.store.next_seq("default")
    sender.broadcast("fast")
    assert listener.listen(handler=lambda m: handled.append(m.action) or 0, once=True) == 1
    assert handled == ["fast"]
    sender.store.append_message(Message(f"default:{slow_seq}", "default", slow_seq, "slow", "{}", "sender", (),
                                        ("listener",), utcnow()))
    # A fresh run (as after a restart) and a running listener both find the late message.
    assert listener.listen(handler=lambda m: handled.append(m.action) or 0, once=True) == 1
    assert handled == ["fast", "slow"]
    assert listener.listen(handler=lambda m: handled.append(m.action) or 0, once=True) == 0


def test_a_running_listener_picks_up_the_late_message_too(ready: Cli, settings: Settings) -> None:
    sender = Service(Settings(node_id="sender", store=settings.store))
    listener = Service(Settings(node_id="listener", store=settings.store, poll_interval_s=0.05))
    handled: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=listener.listen,
                              kwargs={"handler": lambda m: handled.append(m.action) or 0, "stop": stop})
    thread.start()
    try:
        _registered(sender, "listener")
        slow_seq = sender.store.next_seq("default")
        sender.broadcast("fast")
        wait_until(lambda: handled == ["fast"], timeout=10)
        sender.store.append_message(Message(f"default:{slow_seq}", "default", slow_seq, "slow", "{}", "sender", (),
                                            ("listener",), utcnow()))
        wait_until(lambda: handled == ["fast", "slow"], timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_restarted_listener_resumes_where_it_stopped_and_never_reruns_an_acked_message(
        ready: Cli, service: Service, tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = _listener(ready, "api-2", log)
    _registered(service, "api-2")
    assert ready("broadcast", "one", "--wait-acks", "-w", "20s").returncode == 0
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=10)
    ready("broadcast", "two")  # sent while the listener is down
    ready("broadcast", "three")
    second = _listener(ready, "api-2", log)
    try:
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, timeout=20)
        time.sleep(0.3)  # a few more polls: nothing may run twice
        assert [line.split()[1] for line in log.read_text().splitlines()] == ["one", "two", "three"]
    finally:
        second.terminate()
        second.wait(timeout=10)


def test_sigterm_lets_the_running_handler_finish_then_exits_0(ready: Cli, service: Service, tmp_path: Path) -> None:
    started, finished = tmp_path / "started", tmp_path / "finished"
    listener = _listener(ready, "api-2", tmp_path / "x",
                         command=f"cat >/dev/null; touch {started}; sleep 1; touch {finished}")
    _registered(service, "api-2")
    sent = ready("broadcast", "slow").stdout.strip()
    wait_until(started.exists, timeout=20)
    listener.send_signal(signal.SIGTERM)
    listener.wait(timeout=20)
    assert listener.returncode == 0 and finished.exists()
    assert [a.status for a in service.store.acks(sent)] == [0]


def test_two_listeners_and_two_senders_with_a_restart_deliver_every_message_to_both(
        ready: Cli, service: Service, tmp_path: Path) -> None:
    logs = {node: tmp_path / node for node in ("l1", "l2")}
    listeners = {node: _listener(ready, node, log) for node, log in logs.items()}
    _registered(service, "l1", "l2")
    senders = [ready.popen("broadcast", "batch", "--payload", str(i), env={"MUTEXCTL_NODE_ID": f"s{i % 2}"})
               for i in range(20)]
    for i, proc in enumerate(senders):
        proc.communicate(timeout=60)
        if i == 9:  # restart l1 in the middle of the run
            listeners["l1"].send_signal(signal.SIGTERM)
            listeners["l1"].wait(timeout=10)
            listeners["l1"] = _listener(ready, "l1", logs["l1"])
    ids = {f"default:{n}" for n in range(1, 21)}
    try:
        # A handler writes its line before its listener records the ack: wait for the acks, then check the logs.
        def unacked() -> dict[str, list[str]]:
            acked = {m: sorted(a.node for a in service.store.acks(m)) for m in sorted(ids)}
            return {m: nodes for m, nodes in acked.items() if nodes != ["l1", "l2"]}
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not unacked(), timeout=30)
        assert unacked() == {}
        for log in logs.values():
            handled = [line.split()[0] for line in log.read_text().splitlines()]
            assert sorted(handled) == sorted(ids), "a message ran twice or never"
    finally:
        for listener in listeners.values():
            listener.terminate()
            listener.wait(timeout=10)


def test_an_idle_listener_reads_the_log_at_most_once_a_second(ready: Cli, settings: Settings) -> None:
    listener = Service(Settings(node_id="idle", store=settings.store))  # default poll interval: 1 s
    reads = []
    original = listener.store.messages_after

    def counting(*args: object, **kwargs: object) -> list[Message]:
        reads.append(time.monotonic())
        return original(*args, **kwargs)  # type: ignore[arg-type]

    listener.store.messages_after = counting  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=listener.listen, kwargs={"handler": lambda m: 0, "stop": stop})
    thread.start()
    time.sleep(3.5)
    stop.set()
    thread.join(timeout=10)
    assert 3 <= len(reads) <= 5  # one read now, then one per second


def test_the_sqlite_log_is_pruned_after_its_retention(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/r.db"
    svc = Service(Settings(node_id="n", store=store, log_retention_s=0.5))
    svc.init_schema()
    old = svc.broadcast("old")
    time.sleep(0.6)  # past the retention
    svc.broadcast("new")
    assert svc.store.get_message(old.id) is None and svc.store.latest_seq("default") == 2


def test_the_library_iterator_acks_each_message_when_the_next_is_asked_for(ready: Cli, settings: Settings) -> None:
    sender = Service(Settings(node_id="sender", store=settings.store))
    sender.broadcast("x")
    sender.broadcast("y")
    listener = Service(Settings(node_id="it", store=settings.store))
    seen = []
    for message in listener.listen(from_start=True, once=True):
        seen.append(message.action)
        assert [a.node for a in listener.store.acks(message.id)] == []  # not acked while being handled
    assert seen == ["x", "y"]
    assert [a.node for a in listener.store.acks("default:1")] == ["it"]


def test_the_cursor_waits_at_a_gap_and_gives_up_on_it_only_after_the_grace() -> None:
    from mutexctl.intracom.cursor import Cursor

    cursor = Cursor(4, gap_grace_s=60)
    cursor.mark(6)  # 6 handled while 5 is missing
    assert not cursor.advance(now=0.0) and cursor.position == 4
    assert not cursor.advance(now=59.0) and cursor.position == 4
    cursor.mark(5)  # 5 arrives late
    assert cursor.advance(now=59.5) and cursor.position == 6
    cursor.mark(8)  # 7 never arrives: its sender died
    assert not cursor.advance(now=100.0) and cursor.position == 6
    assert cursor.advance(now=160.5) and cursor.position == 8


def test_a_listener_starts_at_its_saved_place_else_at_its_first_registration_else_now() -> None:
    from mutexctl.intracom.cursor import Cursor
    from mutexctl.models import Registration

    def start(cursor: int | None, since: int | None, *, from_start: bool = False) -> int:
        return Cursor.start(Registration(cursor, since), 500, from_start=from_start, gap_grace_s=60).position

    assert start(7, 3) == 7  # resumes where it saved
    assert start(None, 3) == 3  # never saved: from where it first registered, however long ago
    assert start(None, None) == 500  # (a store that cannot tell: from now)
    assert start(7, 3, from_start=True) == 0
    cursor = Cursor.start(Registration(None, 3), 500, from_start=False, gap_grace_s=60)
    assert [cursor.wanted(Message(f"default:{n}", "default", n, "a", "{}", "s", (), (), utcnow())) for n in (3, 4)] \
        == [False, True]


def test_an_action_named_status_is_sent_with_broadcast_send(ready: Cli) -> None:
    sent = ready("broadcast", "send", "status", "--json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)["message"]
    assert (message["action"], message["id"]) == ("status", "default:1")
    assert ready("broadcast", "reload").stdout.strip() == "default:2"  # the short form still sends
    report = ready("broadcast", "status", "default:1", "--json")
    assert report.returncode == 0 and json.loads(report.stdout)["message"]["action"] == "status"
    listened = ready("listen", "--from-start", "--once", "--include-self")
    assert [json.loads(line)["action"] for line in listened.stdout.splitlines()] == ["status", "reload"]
    assert "send" in ready("broadcast", "--help").stdout and "status" in ready("broadcast", "--help").stdout
