"""Store operations are built and interpreted without I/O, so a second executor runs them unchanged.

Each MongoDB operation is a generator that yields the commands it needs (stores/mongodb/commands) and
interprets the replies. Here an executor that records what the synchronous one sent and got back runs
a session of operations against the server; then a second executor, written here with its own loop
and no server at all, replays the replies into the same operations built anew from the same inputs:
each must send the very same commands and come to the very same result or error. That is what the
asyncio executor will rely on: it only sends, every builder and interpreter stays as it is.
"""

from __future__ import annotations

import dataclasses
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
        ("release the slot", lambda: slots.release_slot(mongo, "s", "node-a", None)),
        ("state", lambda: base.read_state("m")),
        ("mark once", lambda: once.mark_once("m", "v1", "node-a", 3, HOLDER)),
        ("mark once again", lambda: once.mark_once("m", "v1", "node-b", 4, HOLDER)),
        ("clear once", lambda: once.clear_once("m", "v1", "ops", HOLDER, "rerun", record_id="r2")),
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
