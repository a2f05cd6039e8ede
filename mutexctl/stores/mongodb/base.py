"""The base every part of the MongoDB store subclasses: the client, the collections, the translation
of driver errors (credentials scrubbed), the queued history events, and what every part reads the
same way (a mutex's state, why a guarded write matched nothing)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from ...errors import ConfigError, DuplicateMutexError, NotOwnerError, StoreError, StoreUnavailableError
from ...logs import logger
from ...models import Holder, LeaseEvent, MutexState, SchemaState
from ...redact import mask_url, secrets_of
from ..common import loss_error
from ..seed_document import EXPIRY, HOLDER_CURRENT, TAKEN_AT, TIMEOUT
from ..steps import HISTORY_RETENTION_S, LOG_RETENTION_S
from .client import URL_HINT, open_client, refused, silent
from .commands import TIME_LIMIT, Cmd, DuplicateKey, Operation, T, aggregate, count, insert_many, insert_one, run_sync
from .documents import history_entry, int_or_none, kept_forced_records, listing_pipeline, mutex_state, text_of, utc

log = logger("mutexctl.stores.mongodb")
# What a read of a mutex computes on the server: its now, and the lease's start, length and end on that clock.
READ = {"_now": "$$NOW", "_takenAt": TAKEN_AT, "_timeout": TIMEOUT, "_expires": EXPIRY}


class MongoBase:
    """What every part of the MongoDB store shares: one client, its collections, its error handling."""

    clock = "server"  # leases are judged on the server's clock ($$NOW)
    expires_by_ttl = True  # the server deletes old log entries itself (TTL indexes)
    history_retention_s: float = HISTORY_RETENTION_S  # (open_store sets the configured one)

    def __init__(self, url: str, *, database: str | None, collection: str, connect_timeout_ms: int,
                 log_retention_s: float = LOG_RETENTION_S) -> None:
        self.log_retention_s = log_retention_s
        self.url = mask_url(url)
        self._secrets = secrets_of(url)
        self.client: MongoClient[dict[str, Any]] = open_client(url, connect_timeout_ms=connect_timeout_ms,
                                                               scrub=self._scrub)
        # Until something is seen listening, each operation first checks for refused connections.
        self._probe_ms: int | None = connect_timeout_ms if url.lower().startswith("mongodb://") else None
        self._connect_timeout_ms = connect_timeout_ms
        try:
            db: Database[dict[str, Any]] = self.client.get_default_database(default=database or "mutexctl") \
                if not database else self.client[database]
        except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
            raise ConfigError(f"bad MongoDB URL {self.url}: {self._scrub(str(exc))}", hint=URL_HINT) from None
        self.database = db.name
        self._db = db
        self._mutexes = db[collection]
        self._forced = db["forced_releases"]
        self._once = db["once"]  # run-once markers
        self._history = db["history"]  # the lease history
        # Events of this process's operations, written to the history by flush_events (the caller's
        # recorder does, off the hot path): acquire and release stay one round trip each.
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._meta = db["meta"]
        self._counters, self._messages, self._acks, self._nodes = (db["counters"], db["messages"], db["acks"],
                                                                    db["nodes"])
        self._unique_ids = False  # the unique index on mutexId is known to exist (see prepare_writes)
        self._prepared: tuple[SchemaState | None] | None = None  # prepare_writes's answer, once known

    def collection(self, table: str) -> Collection[dict[str, Any]]:
        """A collection by its schema name (``mutexes`` is configurable)."""
        return self._mutexes if table == "mutexes" else self._db[table]

    MAX_PENDING = 10_000  # events kept for the history while it cannot be written; the oldest go first

    def queue_event(self, event: LeaseEvent) -> None:
        from .documents import event_doc

        with self._pending_lock:
            self._pending.append(event_doc(event))
            if len(self._pending) > self.MAX_PENDING:
                del self._pending[0]
                log.warning("lease history: an event was dropped (%d waiting to be written)", self.MAX_PENDING)

    def pending_events(self) -> int:
        return len(self._pending)

    def pending_for(self, mutex_id: str) -> list[dict[str, Any]]:
        """This process's events of ``mutex_id`` not yet in the history."""
        with self._pending_lock:
            return [e for e in self._pending if e.get("mutexId") == mutex_id]

    def flush_events(self) -> None:
        """Write what this process's operations recorded to the history: one insert; kept for the
        next try when the store does not take it."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._run(write_events(batch))
        except StoreError:
            with self._pending_lock:
                self._pending[:0] = batch
                del self._pending[:max(0, len(self._pending) - self.MAX_PENDING)]
            raise

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def _errors(self, *, probe: bool = True) -> Iterator[None]:
        """Driver errors become StoreUnavailableError/StoreError/ConfigError, credentials scrubbed.
        DuplicateKeyError passes: callers decide what it means ("held", "acked already"). ``probe``:
        first check for refused connections (a blocking check an event loop does without)."""
        if probe and self._probe_ms is not None:
            hosts = refused(self.client, self._probe_ms)
            if hosts:
                raise StoreUnavailableError(f"store {self.url} is unreachable: connection refused by "
                                            f"{', '.join(hosts)}", hint="check that the server runs and listens "
                                                                        "on that port")
            self._probe_ms = None
        try:
            yield
        except DuplicateKeyError:
            raise
        except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
            reason = self._scrub(str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0])
            log.debug("store %s unreachable: %s", self.url, reason)
            if "Got response id" in reason or "but expected" in reason:
                raise StoreUnavailableError(f"store {self.url} answered, but it is not a MongoDB server",
                                            hint="check the port: another service listens there") from exc
            quiet = silent(self.client, self._connect_timeout_ms) \
                if probe and ("timed out" in reason or "No servers found yet" in reason) else []
            if quiet:  # (the failure path only: the check blocks, and an event loop's caller goes without it)
                waited = self.client.options.server_selection_timeout
                raise StoreUnavailableError(
                    f"store {self.url} did not answer: {', '.join(quiet)} accepted the connection and said nothing "
                    f"in {waited:g}s", hint="check that a MongoDB server listens on that port and is not stopped or "
                                            "overloaded; the URL's connectTimeoutMS sets how long to wait") from exc
            raise StoreUnavailableError(f"store {self.url} is unreachable: {reason}",
                                        hint="check the host and port, that the server runs, and the network; "
                                             "connect_timeout sets how long to look for it") from exc
        except OperationFailure as exc:
            message = self._scrub(str((exc.details or {}).get("errmsg") or exc))
            if exc.code == TIME_LIMIT:  # (a read over the server's own time limit: it is overloaded)
                raise StoreUnavailableError(f"store {self.url} answered too slowly: {message}",
                                            hint="the server is overloaded; try again in a moment") from exc
            if "auth" in message.lower():
                raise ConfigError(f"store {self.url} refused the credentials: {message}",
                                  hint="check the user, password and authSource in the URL") from None
            raise StoreError(f"store {self.url} failed: {message}") from exc
        except PyMongoError as exc:
            raise StoreError(f"store {self.url} failed: {self._scrub(str(exc))}") from exc

    # -- what the parts share: a mutex's state, why a guarded write matched nothing, whether a take may
    #    insert, our lease's filter, a forced release's records ------------------------------------------

    def get(self, mutex_id: str) -> MutexState | None:
        return self._run(read_state(mutex_id))

    def _run(self, op: Operation[T]) -> T:
        """The synchronous executor: send each command the operation yields, give it each reply."""
        with self._errors():
            return run_sync(op, self._send, DuplicateKeyError, OperationFailure)

    def _send(self, command: Cmd) -> Any:
        found = self.collection(command.collection) if command.collection else self._mutexes
        options = command.options
        if command.verb == "find_one_and_update":
            filter_, update = command.args
            after = ReturnDocument.AFTER if options["after"] else ReturnDocument.BEFORE
            return found.find_one_and_update(filter_, update, upsert=options["upsert"],
                                             projection=options["projection"], return_document=after)
        if command.verb == "update_one":
            filter_, update = command.args
            return found.update_one(filter_, update, upsert=bool(options.get("upsert"))).matched_count
        if command.verb == "aggregate":
            return list(found.aggregate(*command.args))
        if command.verb == "count":
            return found.count_documents(*command.args, limit=options["limit"])
        if command.verb == "find_one":
            return found.find_one(command.args[0], options["projection"])
        if command.verb == "find":
            cursor = found.find(command.args[0], options["projection"])
            if options["sort"]:
                cursor = cursor.sort(options["sort"])
            if options.get("max_time_ms"):
                cursor = cursor.max_time_ms(options["max_time_ms"])
            if options.get("batch_size"):
                cursor = cursor.batch_size(options["batch_size"])
            return list(cursor.limit(options["limit"]))
        if command.verb == "delete_one":
            return found.delete_one(command.args[0]).deleted_count
        if command.verb == "index_information":
            return found.index_information()
        if command.verb == "create_index":
            ttl = {} if options["expire_after_s"] is None else {"expireAfterSeconds": options["expire_after_s"]}
            return found.create_index(command.args[0], name=options["name"], unique=options["unique"], **ttl)
        if command.verb == "drop_index":
            found.drop_index(command.args[0])
            return None
        if command.verb == "has_collection":
            return found.name in self._db.list_collection_names(filter={"name": found.name})
        if command.verb == "create_collection":
            self._db.create_collection(found.name, check_exists=False)  # (the server tells a race: code 48)
            return None
        if command.verb == "command":
            return self._db.command(command.args[0])
        if command.verb == "insert_many":
            try:
                found.insert_many(command.args[0], ordered=False)
            except BulkWriteError as exc:
                return already_had(exc)
            return 0
        if command.verb == "insert_one":
            found.insert_one(*command.args)
            return None
        raise ValueError(f"unknown command {command.verb}")

    def _ours(self, mutex_id: str, node_id: str, fence: int | None, *also: dict[str, Any],
              user: str | None = None) -> dict[str, Any]:
        """Our lease: taken by ``node_id`` and, given a fence, that very lease — its holder stamp
        still current, so another service's take-over under the same node id is not ours. Without a
        fence (a plain release, the seed's V), only a lease no running ``acquire -- CMD`` supervises
        and, ``user`` given, one that user took (or whose user is not recorded)."""
        guard: dict[str, Any] = {"mutexId": mutex_id, "taken": True, "takenBy": node_id}
        checks = list(also)
        if fence is not None:
            guard["fence"] = fence
            checks.append(HOLDER_CURRENT)
        else:
            guard["holder.exec"] = {"$ne": True}
            if user:
                guard["holder.user"] = {"$in": [user, "", None]}
        if checks:
            guard["$expr"] = {"$and": checks}
        return guard

    def _queue_forced(self, after: dict[str, Any], by: Holder, record_id: str, slot: str | None) -> None:
        """The lease history's events of a forced release, from its records in the document (a
        semaphore's: one per holder, ids ``record_id-fence``)."""
        for record in after.get("forced") or ():
            if isinstance(record, dict) and str(record.get("id", "")).split("-")[0] == record_id:
                self.queue_event(LeaseEvent(
                    str(after.get("mutexId")), "forced", utc(record["at"]), text_of(record.get("byNode")), None, by,
                    held_ms=int_or_none(record.get("heldMs")), previous_holder=text_of(record.get("previousHolder")),
                    previous_fence=int_or_none(record.get("previousFence")), reason=text_of(record.get("reason")),
                    slot=slot))

    def _scrub(self, text: str) -> str:
        text = mask_url(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def already_had(exc: BulkWriteError) -> int:
    """An unordered insert refused only as duplicates is a retry of a batch the server had partly
    taken (ids repeat): how many it had. Any other refusal stands."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != 11000 for e in errors):
        raise exc
    return len(errors)


# -- operations every part uses (see commands) -------------------------------------------------------


def read_state(mutex_id: str) -> Operation[MutexState | None]:
    """One aggregate: the mutex's documents (one, unless another service made copies), the server's
    now and the lease's expiry on that clock."""
    docs = yield aggregate("mutexes", listing_pipeline({"mutexId": mutex_id}, READ))
    return mutex_state(docs, docs[0]["_now"]) if docs else None


def loss(mutex_id: str, node_id: str, fence: int | None, verb: str,
         user: str | None = None) -> Operation[NotOwnerError]:
    """Why a guarded write matched nothing, from the state read after it (on the failure path only)."""
    return loss_error(mutex_id, node_id, fence, verb, (yield from read_state(mutex_id)), user)


def may_upsert(store: MongoBase, mutex_id: str, *, verb: str = "take") -> Operation[bool]:
    """Whether a take may insert the mutex's document. Without the unique index an upsert beside
    another service's document (ObjectId _id) would make a second copy of the mutex: look first, and
    never upsert beside one (DuplicateMutexError where copies exist already)."""
    if store._unique_ids:
        return True
    copies = yield count("mutexes", {"mutexId": mutex_id}, limit=2)
    if copies > 1:
        raise DuplicateMutexError(mutex_id, (yield from read_state(mutex_id)), verb=verb)
    return bool(copies == 0)


def forced_at(after: dict[str, Any], record_id: str) -> datetime | None:
    """The server's time of a forced release, from its record in the document it wrote (the state it
    broke is judged at that instant, on the server's clock)."""
    for record in after.get("forced") or ():
        if isinstance(record, dict) and str(record.get("id", "")).split("-")[0] == record_id \
                and isinstance(record.get("at"), datetime):
            return utc(record["at"])
    return None


def copy_forced(docs: list[dict[str, Any]]) -> Operation[None]:
    """Copy the forced-release records kept in mutex documents into their collection (idempotent)."""
    for mutex_id, record in kept_forced_records(docs):
        try:
            yield insert_one("forced_releases", history_entry(mutex_id, record))
        except DuplicateKey:
            pass  # copied before


def write_events(batch: list[dict[str, Any]]) -> Operation[None]:
    """The queued history events, in one unordered insert (events the server has already are skipped)."""
    yield insert_many("history", batch)
