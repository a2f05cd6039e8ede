"""MongoDB only: the seed's document, interop, round trips, write concern, outages, restarts and auth."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo
import pytest
from mutexctl import SCHEMA_VERSION, LockHeldError, Service, Settings
from pymongo import monitoring

from ..conftest import BUSY_S, Cli, pid_alive, start_job, wait_until
from ..helpers.mongo_server import MongoServer, ServerUnavailableError, with_database

pytestmark = pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)


class Commands(monitoring.CommandListener):
    """Every command the driver sends (handshakes and heartbeats are not commands)."""

    def __init__(self) -> None:
        self.events: list[monitoring.CommandStartedEvent] = []
        self.history_writes = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert" and event.command.get("insert") == "history":
            self.history_writes += 1  # the lease history, written by a background thread: off the hot path
            return
        self.events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self) -> list[str]:
        return [e.command_name for e in self.events]


@pytest.fixture
def commands() -> Iterator[Commands]:
    listener = Commands()
    monitoring.register(listener)  # applies to clients created from now on
    yield listener
    monitoring._LISTENERS.command_listeners.remove(listener)


@pytest.fixture
def collection(store_url: str) -> Iterator[pymongo.collection.Collection]:
    with pymongo.MongoClient(store_url, tz_aware=True) as client:
        yield client.get_default_database()["mutexes"]


def test_the_document_keeps_the_seed_s_shape(service: Service, collection: pymongo.collection.Collection) -> None:
    lease = service.try_acquire("module-service-action", timeout="1500ms", command="./job")
    doc = collection.find_one({"_id": "module-service-action"})
    assert doc is not None
    assert {k: doc[k] for k in ("_id", "mutexId", "taken", "takenBy", "timeout", "fence")} == {
        "_id": "module-service-action", "mutexId": "module-service-action", "taken": True, "takenBy": "node-a",
        "timeout": 1500, "fence": lease.fence}
    assert isinstance(doc["takenAt"], str) and len(doc["takenAt"]) == 24 and doc["takenAt"].endswith("Z")
    taken_at = datetime.fromisoformat(doc["takenAt"].replace("Z", "+00:00"))
    assert lease.expires_at - taken_at == timedelta(milliseconds=1500)  # the lease ends at takenAt + timeout
    assert set(doc) == {"_id", "mutexId", "taken", "takenAt", "takenBy", "timeout", "fence", "holder"}
    assert doc["holder"]["command"] == "./job" and doc["holder"]["pid"] == os.getpid()
    assert doc["holder"]["took"] is None  # (a take-over names, for the history, whose lease it took)
    # mutexctl's own details carry the takenAt and takenBy they belong to
    assert (doc["holder"]["takenAt"], doc["holder"]["takenBy"]) == (doc["takenAt"], "node-a")


def test_a_seed_shaped_document_from_another_service_is_understood(
        service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    lease_ms = int(BUSY_S * 2000)  # long enough to be read as held by a CLI started on a busy machine
    now = datetime.now(UTC)
    iso = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    collection.insert_one({"_id": "legacy", "mutexId": "legacy", "taken": True, "takenAt": iso,
                           "takenBy": "java-service-3", "timeout": lease_ms})
    with pytest.raises(LockHeldError) as caught:
        service.try_acquire("legacy", timeout="5s")
    assert "java-service-3" in str(caught.value)
    [state] = json.loads(cli("status", "legacy", "--json").stdout)["mutexes"]
    assert state["state"] == "held" and state["taken_by"] == "java-service-3" and state["timeout_ms"] == lease_ms
    assert 0 < state["remaining_ms"] <= lease_ms
    lease = wait_until(lambda: _try(service, "legacy"), timeout=lease_ms / 1000 + BUSY_S * 3)
    assert lease.fence == 1  # a seed document has no fence: ours starts at 1
    assert collection.find_one({"_id": "legacy"})["takenBy"] == "node-a"


def test_acquire_renew_and_release_are_one_round_trip_each(store_url: str, commands: Commands) -> None:
    with Service(Settings(node_id="node-a", store=store_url)) as svc:
        # The first write of a Service also reads the schema version once (a newer store is refused).
        svc.release("warm-up", token=svc.try_acquire("warm-up").fence)
        commands.events.clear()
        lease = svc.try_acquire("rt", timeout="5s")
        assert commands.names() == ["findAndModify"]
        lease = svc.renew(lease)
        assert commands.names() == ["findAndModify"] * 2
        svc.release("rt", token=lease.fence)
        assert commands.names() == ["findAndModify"] * 3
        assert all(e.command["writeConcern"] == {"w": "majority"} for e in commands.events)
        wait_until(lambda: commands.history_writes >= 1, timeout=5)  # ... the history followed, separately
        commands.events.clear()
        svc.status()
        assert commands.names() == ["aggregate", "find"]  # the joins, then the documents' cursor


@pytest.mark.parametrize("slots", [{"limit": 3}, {"shared": True}], ids=["semaphore", "shared"])
def test_a_slot_s_acquire_renew_and_release_are_one_round_trip_each(store_url: str, commands: Commands,
                                                                     slots: dict[str, object]) -> None:
    with Service(Settings(node_id="node-a", store=store_url)) as svc:
        svc.release("warm-up", token=svc.try_acquire("warm-up").fence)
        svc.try_acquire("rt", timeout="5s", **slots)  # another holder, so that this is not the first
        commands.events.clear()
        lease = svc.try_acquire("rt", timeout="5s", **slots)
        assert commands.names() == ["findAndModify"]
        lease = svc.renew(lease)
        assert commands.names() == ["findAndModify"] * 2
        svc.leases.release("rt", token=lease.fence, kind=lease.kind)
        assert commands.names() == ["findAndModify"] * 3
        assert all(e.command["writeConcern"] == {"w": "majority"} for e in commands.events)


def test_status_is_two_reads_the_joins_then_the_documents_cursor(store_url: str, commands: Commands) -> None:
    with Service(Settings(node_id="node-a", store=store_url)) as svc:
        svc.init_schema()
        svc.try_acquire("stuck", timeout="1m")
        svc.force_release("stuck", reason="INC-7")
        svc.try_acquire("other", timeout="1m")
        commands.events.clear()
        view = svc.overview()
        assert commands.names() == ["aggregate", "find"]  # now, schema, forced, markers; then every document
        assert [(s.mutex_id, s.state) for s in view.states] == [
            ("mutexctl.schema", "free"), ("other", "held"), ("stuck", "free")]
        assert [(f.mutex_id, f.reason) for f in view.forced] == [("stuck", "INC-7")]
        assert view.schema is not None and view.schema.version == SCHEMA_VERSION
        commands.events.clear()
        assert svc.overview("other").forced == () and commands.names() == ["aggregate", "find"]


def test_status_shows_the_store_clock_skew(cli: Cli) -> None:
    document = json.loads(cli("status", "--json").stdout)  # measured on an empty store too
    assert document["mutexes"] == [] and abs(document["store_clock_skew_ms"]) < 5000
    cli("acquire", "deploy", "--timeout", "1m")
    document = json.loads(cli("status", "--json").stdout)
    assert abs(document["store_clock_skew_ms"]) < 5000  # same machine: near zero, but measured
    assert "# store clock:" in cli("status").stdout


def test_an_unreachable_server_exits_69_within_the_connect_timeout(cli: Cli) -> None:
    url = "mongodb://admin:s3cret@127.0.0.1:9/?directConnection=true"
    started = time.monotonic()
    done = cli("--store", url, "acquire", "job", env={"MUTEXCTL_CONNECT_TIMEOUT": "1s"})
    elapsed = time.monotonic() - started
    assert done.returncode == 69
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("mutexctl: store mongodb://***@127.0.0.1:9/") and "unreachable" in lines[0]
    assert "s3cret" not in done.stderr and "admin" not in done.stderr and len(lines) <= 2
    assert elapsed < 1.0 + 5  # at most the timeout, plus process start-up (a refused port: at once)
    document = json.loads(cli("--json", "--store", url, "status", env={"MUTEXCTL_CONNECT_TIMEOUT": "300ms"}).stdout)
    assert document["error"]["exit_code"] == 69 and "s3cret" not in json.dumps(document)


def test_a_bad_url_is_a_configuration_error(cli: Cli) -> None:
    done = cli("--store", "mongodb://user:pw@host:notaport/", "status")
    assert done.returncode == 78 and "pw" not in done.stderr.replace("pw@", "")
    assert "Traceback" not in done.stderr


@pytest.fixture
def durable_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of this test's own on the SQLite engine, so it can be killed and restarted."""
    if os.environ.get("MUTEXCTL_TEST_MONGODB_URI"):
        pytest.skip("kill -9 and restart need the suite's own wire server")
    server = MongoServer(sqlite_path=tmp_path / "server.db")
    try:
        server.start()
    except ServerUnavailableError as exc:
        pytest.fail(str(exc))
    yield server
    server.kill()


def test_killing_the_server_stops_the_command_before_its_lease_could_expire_and_a_restart_recovers(
        durable_server: MongoServer, tmp_path: Path, cli: Cli) -> None:
    url = with_database(durable_server.uri, "fault")
    env = {"MUTEXCTL_STORE": url, "MUTEXCTL_CONNECT_TIMEOUT": "500ms"}
    first = cli("acquire", "before", env=env)
    assert first.returncode == 0
    proc, grandchild = start_job(cli, tmp_path, "--timeout", "3s", env=env)
    acquired_by = time.monotonic()  # the lease was taken before the command started
    durable_server.kill()
    wait_until(lambda: not pid_alive(grandchild), timeout=10, interval=0.01)
    assert time.monotonic() - acquired_by < 3.0, "the command outlived the lease"
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 75, err
    assert "could not renew the lease in time" in err
    durable_server.start()  # the same port: the URL still works
    done = cli("acquire", "job", "--wait", "10s", env={**env, "MUTEXCTL_CONNECT_TIMEOUT": "5s"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"  # the acquisition acknowledged before the crash survived it
    [state] = [s for s in json.loads(cli("status", "--json", env=env).stdout)["mutexes"] if s["mutex"] == "before"]
    assert (state["state"], state["fence"]) == ("held", 1)


def test_credentials_work_and_wrong_ones_give_one_line_without_the_secret(cli: Cli) -> None:
    if os.environ.get("MUTEXCTL_TEST_MONGODB_URI"):
        pytest.skip("needs a server started with a known user")
    server = MongoServer(user="ops:c0rrect-horse")
    try:
        server.start()
    except ServerUnavailableError as exc:
        pytest.fail(str(exc))
    try:
        host = server.uri.split("//", 1)[1].split("/", 1)[0]
        good = f"mongodb://ops:c0rrect-horse@{host}/authdb?directConnection=true&authSource=admin" \
               "&authMechanism=SCRAM-SHA-256"
        assert cli("--store", good, "acquire", "x").returncode == 0
        bad = good.replace("c0rrect-horse", "wr0ng-pa55")
        done = cli("--store", bad, "acquire", "y", env={"MUTEXCTL_CONNECT_TIMEOUT": "2s"})
        assert done.returncode == 78, done.stderr
        assert "wr0ng-pa55" not in done.stderr and "c0rrect" not in done.stderr
        assert done.stderr.startswith("mutexctl: ") and len(done.stderr.strip().splitlines()) <= 2
    finally:
        server.stop()


def _try(svc: Service, name: str) -> object:
    try:
        return svc.try_acquire(name, timeout="5s")
    except LockHeldError:
        return None


@pytest.mark.parametrize("option", ["tsl=true", "tls=maybe", "connectTimeoutMS=-5", "readPreference=nearest-ish"])
def test_a_misspelled_or_invalid_url_option_is_a_configuration_error_naming_it(option: str, store_url: str,
                                                                               cli: Cli) -> None:
    url = f"{store_url}&{option}"
    key = option.split("=", maxsplit=1)[0]
    for args in ((), ("--json",)):
        done = cli(*args, "--store", url, "acquire", "job")
        assert done.returncode == 78, done.stdout + done.stderr
        assert f"option '{key}'" in done.stdout + done.stderr
        assert "Warning" not in done.stderr and "warnings.warn" not in done.stderr
    assert cli("status", "--json").returncode == 0 and json.loads(cli("status", "--json").stdout)["mutexes"] == []


def test_a_refused_port_is_told_at_once_and_an_unresolvable_name_is_an_outage(cli: Cli) -> None:
    started = time.monotonic()
    done = cli("--store", "mongodb://127.0.0.1:9/?directConnection=true", "status")  # connect_timeout: 5 s
    assert done.returncode == 69 and "connection refused by 127.0.0.1:9" in done.stderr
    assert time.monotonic() - started < 4  # not the 5 s of server selection
    srv = cli("--store", "mongodb+srv://no-such-cluster.invalid/x", "status")
    assert srv.returncode == 69 and "does not resolve" in srv.stderr, srv.stderr


def test_a_port_that_speaks_another_protocol_is_named_as_such(cli: Cli) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        for _ in range(20):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\0" * 64)

    threading.Thread(target=answer, daemon=True).start()
    port = server.getsockname()[1]
    try:
        done = cli("--store", f"mongodb://127.0.0.1:{port}/?directConnection=true", "status",
                   env={"MUTEXCTL_CONNECT_TIMEOUT": "1s"})
    finally:
        server.close()
    assert done.returncode == 69 and "not a MongoDB server" in done.stderr, done.stderr


def test_an_endpoint_that_accepts_and_never_answers_is_told_within_the_url_s_connect_timeout(cli: Cli) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # the kernel accepts; nothing ever answers
    port = server.getsockname()[1]
    try:
        quick = cli("--store", f"mongodb://127.0.0.1:{port}/x?connectTimeoutMS=1000", "status")
        default = cli("--store", f"mongodb://127.0.0.1:{port}/x", "status", env={"MUTEXCTL_CONNECT_TIMEOUT": "2s"})
    finally:
        server.close()
    for done, url, waited in ((quick, f"mongodb://127.0.0.1:{port}/x?connectTimeoutMS=1000", "1s"),
                              (default, f"mongodb://127.0.0.1:{port}/x", "2s")):  # the URL's, else connect_timeout
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 69 and len(lines) == 2, done.stderr
        assert lines[0] == f"mutexctl: store {url} did not answer: 127.0.0.1:{port} accepted the connection and " \
                           f"said nothing in {waited}", lines[0]
        assert "not a MongoDB server" not in done.stderr


def test_the_url_s_own_timeouts_win_over_connect_timeout(store_url: str) -> None:  # (the module is MongoDB's)
    from mutexctl.stores.mongodb.client import timeouts

    assert timeouts("mongodb://h/x", 5000) == {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000,
                                                "socketTimeoutMS": 10_000}
    assert timeouts("mongodb://u:p@h/x?connectTimeoutMS=1000", 5000) == {"serverSelectionTimeoutMS": 1000,
                                                                         "socketTimeoutMS": 10_000}
    assert timeouts("mongodb://h/?serverselectiontimeoutms=30000&socketTimeoutMS=0", 5000) == \
        {"connectTimeoutMS": 5000}


def test_a_waiter_rides_out_a_server_restart_within_its_wait(durable_server: MongoServer, cli: Cli,
                                                            tmp_path: Path) -> None:
    url = with_database(durable_server.uri, "outage")
    env = {"MUTEXCTL_STORE": url, "MUTEXCTL_CONNECT_TIMEOUT": "500ms"}
    assert cli("acquire", "deploy", "--timeout", "2s", env=env).returncode == 0
    durable_server.kill()
    waiter = cli.popen("acquire", "deploy", "--wait", "30s", "--", "true", env={**env, "MUTEXCTL_NODE_ID": "w"})
    time.sleep(1.5)  # an outage longer than the connect timeout: the waiter must not give up
    assert waiter.poll() is None, waiter.communicate()
    durable_server.start()
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert "unreachable" in err and "trying again until the wait ends" in err
    short = cli("acquire", "other", "--wait", "1s", env={**env, "MUTEXCTL_STORE": "mongodb://127.0.0.1:9/x"})
    assert short.returncode == 69  # the wait ended with the store still away
