"""Store operations are built and interpreted without I/O, so a second executor runs them unchanged.

Each MongoDB operation is a generator that yields the commands it needs (stores/mongodb/commands) and
interprets the replies; each SQLite one yields its statements (SQL, parameters, the answer it wants:
stores/sqlite/statements) and interprets the rows. Here an executor that records what was sent and
what came back runs a session of operations against the store; then a second executor, written here
with its own loop and no store at all, replays the replies into the same operations built anew from the same inputs:
each must send the very same commands and come to the very same result or error. That is what the
asyncio executor will rely on: it only sends, every builder and interpreter stays as it is.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mutexctl import Settings
from mutexctl.errors import MutexctlError
from mutexctl.models import SEMAPHORE, Holder, Lease, LeaseEvent, LeaseRequest, Message
from mutexctl.stores import open_store
from mutexctl.stores.mongodb import (
    MongoStore,
    base,
    exclusive,
    history,
    leases,
    log,
    once,
    queue,
    schema,
    slots,
    status,
)
from mutexctl.stores.mongodb.commands import Cmd, DuplicateKey, Operation, Refused
from mutexctl.stores.protocols import Store
from mutexctl.stores.sqlite import SQLiteStore
from mutexctl.stores.sqlite.statements import Now, Sql, answer
from mutexctl.stores.steps import STEPS
from pymongo.errors import DuplicateKeyError, OperationFailure

HOLDER = Holder("host-1", 4242, "ops", "./job")
NOW = datetime(2026, 12, 3, tzinfo=UTC)
MONGODB = pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)


@pytest.fixture
def mongo(store_url: str) -> Iterator[MongoStore]:
    store = open_store(Settings(node_id="unused", store=store_url))
    assert isinstance(store, MongoStore)
    try:
        store.prepare_writes()
        yield store
    finally:
        store.close()


class Recording:
    """The synchronous executor, each command and its reply (or the server's refusal) written down."""

    def __init__(self, store: MongoStore) -> None:
        self.store, self.sent, self._real = store, [], store._send
        store._send = self._send  # type: ignore[method-assign]

    def _send(self, command: Cmd) -> Any:
        try:
            reply = self._real(command)
        except OperationFailure as refused:  # (DuplicateKeyError among them)
            self.sent.append((command, refused))
            raise
        self.sent.append((command, reply))
        return reply


def replay(op: Operation[Any], transcript: list[tuple[Cmd, Any]]) -> Any:
    """A second executor: its own loop, no server; each command the operation yields must be the one
    recorded, and gets the recorded reply (a refusal is thrown in as the synchronous executor does)."""
    answers = iter(transcript)
    command = next(op)
    while True:
        recorded, reply = next(answers)
        assert command == recorded
        try:
            if isinstance(reply, DuplicateKeyError):
                command = op.throw(DuplicateKey())
            elif isinstance(reply, OperationFailure):
                command = op.throw(Refused(reply))
            else:
                command = op.send(reply)
        except StopIteration as done:
            assert next(answers, None) is None, "the replay ended before the recording"
            return done.value


@dataclasses.dataclass(frozen=True)
class Raised:
    kind: str
    message: str


def outcome(run: Callable[[], Any]) -> Any:
    """A result, or the error raised, as something to compare."""
    try:
        return run()
    except (MutexctlError, Refused) as error:
        return Raised(type(error).__name__, str(error))


@MONGODB
def test_every_operation_replays_through_a_second_executor_with_the_same_commands_and_results(
        mongo: MongoStore) -> None:
    a = LeaseRequest("m", "node-a", 60_000, HOLDER, 10.0)
    b = LeaseRequest("m", "node-b", 60_000, HOLDER, 10.0)
    slot = LeaseRequest("s", "node-a", 60_000, HOLDER, 0.0, SEMAPHORE, 2)
    message = Message("default:1", "default", 1, "go", "{}", "node-a", (), (), NOW)
    taken: dict[str, Lease] = {}
    session: list[tuple[str, Callable[[], Operation[Any]]]] = [
        ("take", lambda: exclusive.take(mongo, a, 0)),
        ("take refused", lambda: exclusive.take(mongo, b, 0)),
        ("join the line", lambda: queue.wait_turn(mongo, b, "token-b", 5)),
        ("renew", lambda: leases.renew(mongo, taken["take"])),
        ("release with another's fence", lambda: leases.release(mongo, "m", "node-a", 99)),
        ("release", lambda: leases.release(mongo, "m", "node-a", taken["take"].fence)),
        ("the waiter's turn", lambda: queue.wait_turn(mongo, b, "token-b", 10)),
        ("leave the line", lambda: queue.leave_queue("m", "token-b")),
        ("forced release", lambda: leases.force_release(mongo, "m", "ops", HOLDER, "test", record_id="r1")),
        ("a slot", lambda: slots.take_slot(mongo, slot, 0, token="slot-1")),
        ("renew the slot", lambda: slots.renew_slot(taken["a slot"])),
        ("announce a writer", lambda: slots.announce("s", "node-b")),
        ("withdraw the writer", lambda: slots.withdraw("s", "node-b")),
        ("release the slot", lambda: slots.release_slot(mongo, "s", "node-a", None)),
        ("state", lambda: base.read_state("m")),
        ("mark once", lambda: once.mark_once("m", "v1", "node-a", 3, HOLDER)),
        ("mark once again", lambda: once.mark_once("m", "v1", "node-b", 4, HOLDER)),
        ("clear once", lambda: once.clear_once(mongo, "m", "v1", "ops", HOLDER, "rerun", record_id="r2")),
        ("record an event", lambda: history.record_event(LeaseEvent("m", "lost", NOW, "node-a", 1, HOLDER),
                                                          record_id="e1")),
        ("history", lambda: history.read_history(["m"], None, None, 10)),
        ("overview", lambda: status.overview(None, 5, 5)),
        ("forced releases", lambda: status.forced_releases("m", 5)),
        ("next number", lambda: log.next_seq("default")),
        ("append", lambda: log.append_message(message)),
        ("append twice", lambda: log.append_message(message)),
        ("ack", lambda: log.record_ack("default:1", "node-b", 0, 12)),
        ("ack again", lambda: log.record_ack("default:1", "node-b", 0, 12)),
        ("messages", lambda: log.messages_after("default", 0, 10)),
        ("register", lambda: log.register_node("node-b", "default", "host-2", 7, since=0)),
        ("nodes", lambda: log.nodes(None)),
        ("schema", schema.read_schema),
        ("unique ids", schema.ensure_unique_ids),
    ]
    recording = Recording(mongo)
    transcripts: dict[str, list[tuple[Cmd, Any]]] = {}
    results: dict[str, Any] = {}
    for label, build in session:
        before = len(recording.sent)
        results[label] = outcome(lambda build=build: mongo._run(build()))
        if isinstance(results[label], Lease):
            taken[label] = results[label]
        transcripts[label] = recording.sent[before:]
    # (the session went as a user's would: refusals and answers among them)
    refused = {label: r.kind for label, r in results.items() if isinstance(r, Raised)}
    assert refused == {"take refused": "LockHeldError", "release with another's fence": "NotOwnerError",
                       "append twice": "StoreError"}, results
    assert results["the waiter's turn"].lease.node_id == "node-b" and results["join the line"].position == 1
    assert results["mark once again"].by_node == "node-a" and results["ack again"] is False
    for label, build in session:
        assert transcripts[label], label  # every operation sent something
        assert outcome(lambda build=build, label=label: replay(build(), transcripts[label])) == results[label], label


@MONGODB
def test_the_synchronous_store_is_only_its_executor_over_these_operations(mongo: MongoStore) -> None:
    """What the store's methods return is what the operations return: the same lease through both doors."""
    store: Store = mongo
    recording = Recording(mongo)
    lease = store.try_acquire(LeaseRequest("x", "node-a", 30_000, HOLDER))
    assert replay(exclusive.take(mongo, LeaseRequest("x", "node-a", 30_000, HOLDER), 0), recording.sent) == lease


# -- SQLite: SQL + parameters + a row interpreter ---------------------------------------------------------

SQLITE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def recorded(store: SQLiteStore, op: Operation[Any], *, write: bool = True) -> tuple[Any, list[tuple[Sql, Any]]]:
    """An executor of its own over the store's connection: each statement run and its answer written down."""
    transcript: list[tuple[Sql, Any]] = []

    def drive(db: sqlite3.Connection) -> Any:
        try:
            statement = next(op)
            while True:
                try:
                    answered = answer(db, statement)
                except sqlite3.Error as error:
                    transcript.append((statement, error))
                    statement = op.throw(error)
                else:
                    transcript.append((statement, answered))
                    statement = op.send(answered)
        except StopIteration as done:  # (inside the transaction, which commits)
            return done.value
        except sqlite3.Error as error:  # as the operation raised it (the transaction then translates it)
            raw.append(Raised(type(error).__name__, str(error)))
            raise

    raw: list[Raised] = []
    try:
        with store._transaction(write) as db:
            return drive(db), transcript
    except MutexctlError as error:
        return raw[0] if raw else Raised(type(error).__name__, str(error)), transcript


def replayed(op: Operation[Any], transcript: list[tuple[Sql, Any]]) -> Any:
    """No database at all: each statement must be the one recorded, and gets the recorded answer."""
    answers = iter(transcript)
    try:
        statement = next(op)
        while True:
            recorded_statement, answered = next(answers)
            assert statement == recorded_statement
            statement = op.throw(answered) if isinstance(answered, BaseException) else op.send(answered)
    except StopIteration as done:
        assert next(answers, None) is None, "the replay ended before the recording"
        return done.value
    except (MutexctlError, sqlite3.Error) as error:
        return Raised(type(error).__name__, str(error))


@SQLITE
def test_every_sqlite_operation_replays_with_the_same_statements_and_results(store_url: str) -> None:
    from mutexctl.stores.sqlite import base as sbase
    from mutexctl.stores.sqlite import events, rows
    from mutexctl.stores.sqlite import leases as sleases
    from mutexctl.stores.sqlite import log as slog
    from mutexctl.stores.sqlite import once as sonce
    from mutexctl.stores.sqlite import queue as squeue
    from mutexctl.stores.sqlite import schema as sschema
    from mutexctl.stores.sqlite import slots as sslots
    from mutexctl.stores.sqlite import status as sstatus

    store = open_store(Settings(node_id="unused", store=store_url))
    assert isinstance(store, SQLiteStore)
    try:
        for step in STEPS:
            store.apply_schema_step(step.number)
        a = LeaseRequest("m", "node-a", 60_000, HOLDER, 10.0)
        b = LeaseRequest("m", "node-b", 60_000, HOLDER, 10.0)
        slot = LeaseRequest("s", "node-a", 60_000, HOLDER, 0.0, SEMAPHORE, 2)
        message = Message("default:1", "default", 1, "go", "{}", "node-a", (), (), NOW)
        taken: dict[str, Lease] = {}
        session: list[tuple[str, bool, Callable[[Now], Operation[Any]]]] = [
            ("take", True, lambda now: sleases.try_acquire(store, a, 0, now)),
            ("take refused", True, lambda now: sleases.try_acquire(store, b, 0, now)),
            ("join the line", True, lambda now: squeue.wait_turn(store, b, "token-b", 5, now)),
            ("renew", True, lambda now: sleases.renew(store, taken["take"], now)),
            ("release with another's fence", True, lambda now: sleases.release(store, "m", "node-a", 99, now)),
            ("release", True, lambda now: sleases.release(store, "m", "node-a", taken["take"].fence, now)),
            ("the waiter's turn", True, lambda now: squeue.wait_turn(store, b, "token-b", 10, now)),
            ("forced release", True, lambda now: sleases.force_release(store, "m", "ops", HOLDER, "test", now)),
            ("a slot", True, lambda now: sslots.take_slot(store, slot, 0, now)),
            ("renew the slot", True, lambda now: sslots.renew_slot(store, taken["a slot"], now)),
            ("announce a writer", True, lambda now: sslots.announce("s", "node-b", now)),
            ("withdraw the writer", True, lambda now: sslots.withdraw("s", "node-b")),
            ("release the slot", True, lambda now: sslots.release_slot(store, "s", "node-a", None, now)),
            ("state", False, lambda now: sbase.read_state(store, "m", now)),
            ("mark once", True, lambda now: sonce.mark_once("m", "v1", "node-a", 3, HOLDER)),
            ("mark once again", True, lambda now: sonce.mark_once("m", "v1", "node-b", 4, HOLDER)),
            ("clear once", True, lambda now: sonce.clear_once(store, "m", "v1", "ops", HOLDER, "rerun")),
            ("record an event", True, lambda now: events.record(86400, "m", "lost", "node-a", 1, HOLDER)),
            ("history", False, lambda now: events.read(["m"], None, None, 10)),
            ("overview", False, lambda now: sstatus.overview(store, None, 5, 5, now)),
            ("forced releases", False, lambda now: rows.forced_records("m", 5)),
            ("next number", True, lambda now: slog.next_seq("default")),
            ("append", True, lambda now: slog.append_message(message, 86400)),
            ("append twice", True, lambda now: slog.append_message(message, 86400)),
            ("ack", True, lambda now: slog.record_ack("default:1", "node-b", 0, 12)),
            ("ack again", True, lambda now: slog.record_ack("default:1", "node-b", 0, 12)),
            ("messages", False, lambda now: slog.messages_after("default", 0, 10)),
            ("register", True, lambda now: slog.register_node("node-b", "default", "host-2", 7, 0)),
            ("nodes", False, lambda now: slog.nodes(None)),
            ("schema", False, lambda now: sbase.schema_record()),
            ("record a step", True, lambda now: sschema.record_step(1, "ops", "0.1", NOW)),
        ]
        for label, write, build in session:
            now = store._now()
            result, transcript = recorded(store, build(now), write=write)
            if isinstance(result, Lease):
                taken[label] = result
            assert transcript, label
            assert replayed(build(now), transcript) == result, label
            if label == "take refused":
                assert result.kind == "LockHeldError" and "held by node-a (host host-1, pid 4242)" in result.message
            if label == "the waiter's turn":
                assert result.lease.node_id == "node-b"
            if label == "append twice":
                assert result.kind == "IntegrityError"
            if label == "ack again":
                assert result is False
    finally:
        store.close()


def test_init_schema_takes_a_collection_made_meanwhile_as_made() -> None:
    """A first insert (the lease history's, by the recorder of the very process that runs init-schema)
    can make a collection between the step's look and its create: the server then refuses the create,
    and the step goes on. Driven here by hand, as only an operation without I/O allows."""
    store = MongoStore.__new__(MongoStore)
    store.log_retention_s = store.history_retention_s = 86400
    op = schema.apply_step(store, 5)  # the lease history: a collection, an index, a TTL index
    command = next(op)
    assert command.verb == "has_collection" and command.collection == "history"
    command = op.send(False)
    assert command.verb == "create_collection"
    command = op.throw(Refused(OperationFailure("collection 'history' already exists", code=48)))
    assert command.verb == "create_index"  # it went on
    with pytest.raises(Refused):  # any other refusal still stops it
        op2 = schema.apply_step(store, 5)
        next(op2)
        op2.send(False)
        op2.throw(Refused(OperationFailure("not authorized on t to execute command", code=13)))
