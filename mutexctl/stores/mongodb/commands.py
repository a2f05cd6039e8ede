"""MongoDB operations as data: each store operation is a generator that *yields* the commands it
needs (a Cmd: verb, collection, arguments) and gets each reply back, building every filter, pipeline
and projection and interpreting every reply (→ Lease, MutexState, a typed error) without I/O. An
executor only sends: ``MongoBase._run`` through the synchronous driver; any other executor (an
asynchronous one, or a test's record and replay) drives the same generators unchanged.

Replies, whatever the executor: ``find_one_and_update``/``find_one`` the document or None;
``aggregate``/``find`` a list of documents; ``count`` an int; ``update_one``/``delete_one`` the number
of documents matched; ``insert_one`` None. A write the unique index refuses is thrown into the
operation as DuplicateKey. No driver is imported here.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class Cmd(NamedTuple):
    verb: str  # find_one_and_update, update_one, aggregate, count, find, find_one, insert_one, delete_one
    collection: str  # by its schema name ("mutexes": the configured one)
    args: tuple[Any, ...]
    options: Mapping[str, Any]


# An operation: yields commands, receives their replies, returns its result (or raises a typed error).
Operation = Generator[Cmd, Any, T]


class DuplicateKey(Exception):  # noqa: N818 - an answer from the server, not a failure of ours
    """The unique index refused the write (another writer has that key): thrown into the operation."""


def find_one_and_update(collection: str, filter_: dict[str, Any], update: Any, *, upsert: bool = False,
                        after: bool = True, projection: dict[str, Any] | None = None) -> Cmd:
    return Cmd("find_one_and_update", collection, (filter_, update),
               {"upsert": upsert, "after": after, "projection": projection})


def update_one(collection: str, filter_: dict[str, Any], update: Any) -> Cmd:
    return Cmd("update_one", collection, (filter_, update), {})


def aggregate(collection: str, pipeline: list[dict[str, Any]]) -> Cmd:
    return Cmd("aggregate", collection, (pipeline,), {})


def count(collection: str, filter_: dict[str, Any], *, limit: int) -> Cmd:
    return Cmd("count", collection, (filter_,), {"limit": limit})


def find_one(collection: str, filter_: dict[str, Any], projection: dict[str, Any] | None = None) -> Cmd:
    return Cmd("find_one", collection, (filter_,), {"projection": projection})


def insert_one(collection: str, document: dict[str, Any]) -> Cmd:
    return Cmd("insert_one", collection, (document,), {})


def run_sync(op: Operation[T], send: Any, duplicate: type[BaseException]) -> T:
    """Drive ``op``: each command to ``send`` (which raises ``duplicate`` where the unique index refuses
    the write), each reply back, until it returns."""
    try:
        command = next(op)
        while True:
            try:
                reply = send(command)
            except duplicate:
                command = op.throw(DuplicateKey())
            else:
                command = op.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
