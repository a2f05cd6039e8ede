"""MongoDB operations as data: each store operation is a generator that *yields* the commands it
needs (a Cmd: verb, collection, arguments) and gets each reply back, building every filter, pipeline
and projection and interpreting every reply (→ Lease, MutexState, a typed error) without I/O. An
executor only sends: ``MongoBase._run`` through the synchronous driver; any other executor (an
asynchronous one, or a test's record and replay) drives the same generators unchanged.

Replies, whatever the executor: ``find_one_and_update``/``find_one`` the document or None;
``aggregate``/``find`` a list of documents; ``count`` an int; ``update_one``/``delete_one`` the number
of documents matched; ``insert_one`` None; ``insert_many`` (unordered) the number the server had
already (a retry of a batch it had partly taken); ``index_information`` the indexes by name;
``create_index`` the index's name; ``has_collection`` a bool; ``command`` the reply document. A write
the unique index refuses is thrown into the operation as DuplicateKey, any other command the server
refuses as Refused. No driver is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from .documents import literal_expr

T = TypeVar("T")
P = ParamSpec("P")


class Cmd(NamedTuple):
    verb: str  # find_one_and_update, update_one, aggregate, count, find, find_one, insert_one, delete_one
    collection: str  # by its schema name ("mutexes": the configured one)
    args: tuple[Any, ...]
    options: Mapping[str, Any]


# An operation: yields commands, receives their replies, returns its result (or raises a typed error).
Operation = Generator[Cmd, Any, T]


class DuplicateKey(Exception):  # noqa: N818 - an answer from the server, not a failure of ours
    """The unique index refused the write (another writer has that key): thrown into the operation."""


class Refused(Exception):  # noqa: N818 - an answer from the server
    """The server refused the command (not allowed, or invalid): thrown into the operation, which may
    take it as an answer; if it does not, the executor reports the server's error (``cause``) as its own."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
        code = getattr(cause, "code", None)
        self.code = code if isinstance(code, int) else None  # the server's error code


NAMESPACE_EXISTS = 48  # the server's code for "collection already exists"
TIME_LIMIT = 50  # the server's code for "operation exceeded time limit" (MaxTimeMSExpired)


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


def find(collection: str, filter_: dict[str, Any], projection: dict[str, Any] | None = None, *,
         sort: list[tuple[str, int]] | None = None, limit: int = 0, batch_size: int = 0,
         max_time_ms: int | None = None) -> Cmd:
    """``batch_size``: documents per round trip (0: the server's default); ``max_time_ms``: the
    server's own time limit for the whole read (over it: the server's error, code TIME_LIMIT)."""
    return Cmd("find", collection, (filter_,), {"projection": projection, "sort": sort, "limit": limit,
                                                "batch_size": batch_size, "max_time_ms": max_time_ms})


def delete_one(collection: str, filter_: dict[str, Any]) -> Cmd:
    return Cmd("delete_one", collection, (filter_,), {})


def index_information(collection: str) -> Cmd:
    return Cmd("index_information", collection, (), {})


def create_index(collection: str, keys: list[tuple[str, int]], *, name: str, unique: bool = False,
                 expire_after_s: int | None = None) -> Cmd:
    return Cmd("create_index", collection, (keys,), {"name": name, "unique": unique, "expire_after_s": expire_after_s})


def drop_index(collection: str, name: str) -> Cmd:
    return Cmd("drop_index", collection, (name,), {})


def has_collection(collection: str) -> Cmd:
    return Cmd("has_collection", collection, (), {})


def create_collection(collection: str) -> Cmd:
    return Cmd("create_collection", collection, (), {})


def command(name: str) -> Cmd:
    """A database command (``hello``, ``buildInfo``) with no arguments; its reply document."""
    return Cmd("command", "", (name,), {})


def update_upsert(collection: str, filter_: dict[str, Any], update: Any) -> Cmd:
    return Cmd("update_one", collection, (filter_, update), {"upsert": True})


def insert_many(collection: str, documents: list[dict[str, Any]]) -> Cmd:
    return Cmd("insert_many", collection, (documents,), {})


def insert_one(collection: str, document: dict[str, Any]) -> Cmd:
    return Cmd("insert_one", collection, (document,), {})


def insert_stamped(collection: str, doc_id: object, fields: dict[str, Any], *,
                   projection: dict[str, Any] | None = None) -> Cmd:
    """Insert ``{_id: doc_id, **fields, at: $$NOW}``: an upsert whose filter no existing document can
    match (every document has ``at``), so an existing ``_id`` is refused as an insert would be. Its
    reply is the document (``projection``: those fields; default, its ``at``)."""
    stamped = [{"$set": {**{key: literal_expr(value) for key, value in fields.items()}, "at": "$$NOW"}}]
    return find_one_and_update(collection, {"_id": doc_id, "at": {"$exists": False}}, stamped, upsert=True,
                               projection=projection or {"at": 1})


def run_sync(op: Operation[T], send: Any, duplicate: type[BaseException], refused: type[BaseException]) -> T:
    """Drive ``op``: each command to ``send`` (which raises ``duplicate`` where the unique index refuses
    the write, ``refused`` where the server refuses the command), each reply back, until it returns."""
    try:
        command = next(op)
        while True:
            try:
                reply = send(command)
            except duplicate:
                command = op.throw(DuplicateKey())
            except refused as exc:
                command = op.throw(Refused(exc))
            else:
                command = op.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    except Refused as unanswered:  # the operation did not take it as an answer: the server's error stands
        raise unanswered.cause from None


async def run_async(op: Operation[T], send: Callable[[Cmd], Any], duplicate: type[BaseException],
                    refused: type[BaseException]) -> T:
    """``run_sync`` for an event loop: ``send`` returns an awaitable reply."""
    try:
        command = next(op)
        while True:
            try:
                reply = await send(command)
            except duplicate:
                command = op.throw(DuplicateKey())
            except refused as exc:
                command = op.throw(Refused(exc))
            else:
                command = op.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    except Refused as unanswered:
        raise unanswered.cause from None


class Executor(Protocol):
    def _run(self, op: Operation[T]) -> T: ...


S = TypeVar("S", bound=Executor)
OPERATION = "__mutexctl_operation__"  # where ``operation`` keeps a method's builder


def operation(build: Callable[Concatenate[S, P], Operation[T]]) -> Callable[Concatenate[S, P], T]:
    """A store method that is one operation: calling it runs the operation ``build`` returns through
    the store's executor; ``builder_of`` gives ``build`` itself to any other executor (asynchronous)."""
    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(self, *args, **kwargs))

    method.__name__, method.__doc__, method.__qualname__ = build.__name__, build.__doc__, build.__qualname__
    setattr(method, OPERATION, build)
    return method


def builder_of(store: object, name: str) -> Callable[..., Operation[Any]] | None:
    """The operation builder behind store method ``name``, if it is one operation."""
    build = getattr(getattr(type(store), name, None), OPERATION, None)
    return build if callable(build) else None
