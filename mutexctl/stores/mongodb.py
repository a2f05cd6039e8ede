"""The MongoDB store: the seed's ``mutexes`` documents on a shared database, leases on the server's clock.

Document (the seed's five fields kept exactly, so other services can share them; see seed_document):
``{_id, mutexId, taken, takenAt: "2026-11-27T12:03:06.908Z", takenBy, timeout: ms, fence: long,
holder: {takenAt, takenBy, since, host, pid, user, command, exec}}``.

Documents are addressed by ``mutexId`` (a unique index), never by ``_id``: other services create
theirs with an ObjectId. Those mutexctl inserts get ``_id = mutexId``. A lease ends at
``takenAt + timeout`` for every reader, so a renewal rewrites ``takenAt``. Every expiry test and every
new time is computed on the server with ``$$NOW`` (MongoDB >= 4.2). Acquire is one
``find_one_and_update(upsert=True)``: when the mutex is held the filter matches nothing, the upsert
tries to insert the same ``mutexId`` and the unique index refuses it with DuplicateKeyError — which
is the answer "held", decided atomically by the server.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import (ConfigurationError, ConnectionFailure, DuplicateKeyError, InvalidURI, OperationFailure,
                            PyMongoError, ServerSelectionTimeoutError)

from ..errors import (ConfigError, DuplicateMutexError, LockHeldError, NotOwnerError, SchemaError, StoreError,
                      StoreUnavailableError)
from ..models import Ack, ForcedRelease, Holder, Lease, Message, MutexState, Overview, parse_iso
from ..schema import (HISTORY_RETENTION_S, LOG_RETENTION_S, NODE_RETENTION_S, UNIQUE_IDS_STEP, AppliedStep,
                      SchemaState)
from . import loss_error, mask_url, released_late_error
from .seed_document import EXPIRED, EXPIRED_OWN, EXPIRY, HOLDER_CURRENT, ISO_NOW, LIVE, TAKEN_AT, TIMEOUT
from .seed_document import expiry as doc_expiry
from .seed_document import holder_is_current, taken_at_time, timeout_ms, unreadable

MIN_SERVER_VERSION = (4, 2)  # $$NOW and update pipelines
UNIQUE_INDEX = "mutexId_unique"


def _literal(value: Any) -> dict[str, Any]:
    """User text inside a pipeline: without $literal, a node id like "$x" would be read as a field path."""
    return {"$literal": value}


class MongoStore:
    """``mongodb://`` and ``mongodb+srv://`` URLs; TLS, auth and timeouts come from the URI's options."""

    clock = "server"

    def __init__(self, url: str, *, database: str | None, collection: str, connect_timeout_ms: int,
                 log_retention_s: float = LOG_RETENTION_S) -> None:
        self.log_retention_s = log_retention_s
        self.url = mask_url(url)
        self._secrets = _secrets(url)
        try:
            self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=connect_timeout_ms, connectTimeoutMS=connect_timeout_ms,
                socketTimeoutMS=max(2 * connect_timeout_ms, 10_000), w="majority", tz_aware=True,
                appname="mutexctl")
            db = self.client.get_default_database(default=database or "mutexctl") if not database \
                else self.client[database]
        except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
            raise ConfigError(f"bad MongoDB URL {self.url}: {self._scrub(str(exc))}",
                              hint="see the URL forms in README.md, section MongoDB") from None
        self.database = db.name
        self._db = db
        self._mutexes = db[collection]
        self._forced = db["forced_releases"]
        self._meta = db["meta"]
        self._counters, self._messages, self._acks, self._nodes = (db["counters"], db["messages"], db["acks"],
                                                                    db["nodes"])
        self._unique_ids = False  # the unique index on mutexId is known to exist (see prepare_writes)

    # -- the store protocol -------------------------------------------------------------------

    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> Lease:
        upsert = True
        if not self._unique_ids:
            # Without the unique index an upsert beside another service's document (ObjectId _id)
            # would make a second copy of the mutex: look first, and never upsert beside one.
            with self._errors():
                copies = self._mutexes.count_documents({"mutexId": mutex_id}, limit=2)
            if copies > 1:
                raise DuplicateMutexError(mutex_id, self.get(mutex_id))
            upsert = copies == 0
        free_or_expired = {"mutexId": mutex_id, "$or": [{"taken": {"$ne": True}}, {"$expr": EXPIRED}]}
        with self._errors():
            try:
                doc = self._mutexes.find_one_and_update(
                    free_or_expired, take_pipeline(mutex_id, node_id, timeout_ms, holder), upsert=upsert,
                    return_document=ReturnDocument.AFTER, projection={"fence": 1, "takenAt": 1, "holder.since": 1})
            except DuplicateKeyError:
                raise LockHeldError(mutex_id) from None
        if doc is None:  # no upsert (see above), and held
            raise LockHeldError(mutex_id)
        taken_at = parse_iso(doc["takenAt"])
        return Lease(mutex_id, node_id, int(doc["fence"]), timeout_ms, taken_at,
                     taken_at + timedelta(milliseconds=timeout_ms))

    def renew(self, lease: Lease) -> Lease:
        """Rewrite ``takenAt`` (and the holder's stamp) to the server's now: every reader of the seed's
        fields then sees the lease extended by its timeout."""
        ours_and_live = self._ours(lease.mutex_id, lease.node_id, lease.fence, LIVE)
        extend = [{"$set": {"takenAt": ISO_NOW, "timeout": lease.timeout_ms, "holder.takenAt": ISO_NOW}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(ours_and_live, extend, return_document=ReturnDocument.AFTER,
                                                    projection={"takenAt": 1})
        if doc is None:
            raise self._loss(lease.mutex_id, lease.node_id, lease.fence, "renew")
        expires = parse_iso(doc["takenAt"]) + timedelta(milliseconds=lease.timeout_ms)
        return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at, expires,
                     lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        # One write: free it, and tell in the same operation whether it had already expired (kept in
        # releasedLate until the next acquire). With a fence the guard proves the lease is the one we
        # wrote, whose takenAt is in the seed's form: the smaller test suffices.
        free = [{"$set": {"taken": False, "releasedLate": EXPIRED if fence is None else EXPIRED_OWN}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(self._ours(mutex_id, node_id, fence), free,
                                                    return_document=ReturnDocument.AFTER,
                                                    projection={"releasedLate": 1, "fence": 1})
        if doc is None:
            raise self._loss(mutex_id, node_id, fence, "release")
        if doc.get("releasedLate"):
            raise released_late_error(mutex_id, doc.get("fence"))

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        if not self._unique_ids:
            with self._errors():
                if self._mutexes.count_documents({"mutexId": mutex_id}, limit=2) > 1:
                    raise DuplicateMutexError(mutex_id, self.get(mutex_id), verb="release")
        with self._errors():
            before = self._mutexes.find_one_and_update({"mutexId": mutex_id, "taken": True},
                                                       {"$set": {"taken": False}},
                                                       return_document=ReturnDocument.BEFORE)
            if before is None:
                return None
            state = _state([before], None, listed=False)
            self._forced.insert_one({"mutexId": mutex_id, "at": datetime.now(timezone.utc), "byNode": by_node,
                                     "byUser": by.user, "byHost": by.host, "reason": reason,
                                     "previousHolder": state.taken_by,
                                     "previousFence": None if state.foreign else state.fence})
        return state

    def get(self, mutex_id: str) -> MutexState | None:
        """One aggregate: the mutex's documents (one, unless another service made copies), the
        server's now and the lease's expiry on that clock."""
        with self._errors():
            docs = list(self._mutexes.aggregate(self._listing({"mutexId": mutex_id})))
        return _state(docs, docs[0]["_now"]) if docs else None

    def overview(self, mutex_id: str | None, forced_limit: int) -> Overview:
        """One aggregate: $facet always yields one document (even from an empty collection), to which
        the server's now, the forced-release history and the schema record are joined."""
        match: dict[str, Any] = {"mutexId": {"$type": "string"}} if mutex_id is None else {"mutexId": mutex_id}
        pipeline: list[dict[str, Any]] = [
            {"$facet": {"mutexes": self._listing(match)}},
            {"$addFields": {"now": "$$NOW"}},
            {"$lookup": {"from": self._meta.name, "as": "meta", "pipeline": [{"$match": {"_id": "schema"}}]}},
        ]
        if forced_limit > 0:  # $limit must be positive
            pipeline.append({"$lookup": {"from": self._forced.name, "as": "forced", "pipeline": [
                {"$match": {} if mutex_id is None else {"mutexId": mutex_id}},
                {"$sort": {"_id": -1}}, {"$limit": forced_limit}]}})
        with self._errors():
            [doc] = self._mutexes.aggregate(pipeline)
        now = _utc(doc["now"])
        return Overview(tuple(_state(copies, now) for copies in _by_name(doc["mutexes"])),
                        tuple(_forced(d) for d in doc.get("forced", ())),
                        _schema(doc["meta"][0]) if doc["meta"] else None, now)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        query = {} if mutex_id is None else {"mutexId": mutex_id}
        with self._errors():
            return [_forced(d) for d in self._forced.find(query).sort("_id", -1).limit(limit)]

    def prepare_writes(self, schema_version: int) -> None:
        """Before the first write: make sure ``mutexId`` is unique, which makes acquire atomic.

        A store that init-schema brought to UNIQUE_IDS_STEP has the index. On an older one it is
        created here (as SQLite creates its tables on first use); where it cannot be (documents
        already share a name, or the user may not create indexes) acquire looks before it writes.
        """
        if schema_version >= UNIQUE_IDS_STEP:
            self._unique_ids = True
            return
        with self._errors():
            try:
                self._unique_ids = self._ensure_unique_ids()
            except DuplicateKeyError:
                self._unique_ids = False
            except OperationFailure:  # e.g. not authorized to create indexes
                self._unique_ids = False

    def schema_problems(self) -> list[tuple[int, str]]:
        with self._errors():
            if _has_unique_ids(self._mutexes.index_information()):
                return []
        return [(UNIQUE_IDS_STEP, f"the unique index on mutexId in collection {self._mutexes.name} is missing")]

    # -- schema ---------------------------------------------------------------------------------

    def schema_state(self) -> SchemaState | None:
        with self._errors():
            doc = self._meta.find_one({"_id": "schema"})
        return None if doc is None else _schema(doc)

    def apply_schema_step(self, step: int) -> None:
        """Step N of mutexctl.schema.STEPS. create_index with the same spec is a no-op the second time.

        The collection check before creating it is not a race: steps run only under mutexctl.schema.
        """
        db = self._db
        with self._errors():
            if step == 1:
                if self._mutexes.name not in db.list_collection_names(filter={"name": self._mutexes.name}):
                    db.create_collection(self._mutexes.name)
                self._mutexes.create_index("takenBy", name="takenBy")
            elif step == 2:
                _ensure_ttl(self._forced, "at", HISTORY_RETENTION_S)
            elif step == 3:
                self._messages.create_index([("channel", 1), ("seq", 1)], name="channel_seq", unique=True)
                _ensure_ttl(self._messages, "at", int(self.log_retention_s))
                self._acks.create_index([("messageId", 1), ("node", 1)], name="message_node", unique=True)
                self._nodes.create_index([("node", 1), ("channel", 1)], name="node_channel", unique=True)
                _ensure_ttl(self._nodes, "lastSeen", NODE_RETENTION_S)
            elif step == UNIQUE_IDS_STEP:
                self._unique_ids = self._add_unique_ids()
            else:
                raise ValueError(f"no schema step {step}")

    def _add_unique_ids(self) -> bool:
        try:
            return self._ensure_unique_ids()
        except DuplicateKeyError:
            pass
        found = self._duplicates()
        names = ", ".join(f"{name!r} ({len(ids)} documents)" for name, ids in found[:5])
        raise SchemaError(f"cannot add the unique index on mutexId: several documents share a name: {names}"
                          + (f" and {len(found) - 5} more" if len(found) > 5 else ""),
                          hint="keep one document per mutexId (the held one), delete the others, then run "
                               "init-schema again; see README.md, 'Sharing mutexes with other services'")

    def retention_drift(self) -> tuple[int, int] | None:
        with self._errors():
            index = self._messages.index_information().get("at_ttl", {})
        kept, wanted = index.get("expireAfterSeconds"), int(self.log_retention_s)
        return None if kept is None or int(kept) == wanted else (int(kept), wanted)

    def apply_retention(self) -> None:
        with self._errors():
            _ensure_ttl(self._messages, "at", int(self.log_retention_s))

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the version to ``step`` and log it, in one write."""
        now = datetime.now(timezone.utc)
        with self._errors():
            self._meta.update_one({"_id": "schema"}, {
                "$set": {"version": step, "appliedAt": now, "appliedBy": applied_by, "toolVersion": tool_version},
                "$push": {"steps": {"step": step, "appliedAt": now, "appliedBy": applied_by}}}, upsert=True)

    def server_report(self) -> dict[str, str]:
        """The server's version (refused below 4.2), topology and the write concern in effect."""
        with self._errors():
            build = self._db.command("buildInfo")  # not server_info(): some servers reject its "buildinfo"
            hello = self._db.command("hello")
        version = check_server_version(build)
        if hello.get("setName"):
            topology = f"replica set {hello['setName']}"
        elif hello.get("msg") == "isdbgrid":
            topology = "sharded cluster (mongos)"
        else:
            topology = "standalone"
        concern = self._mutexes.write_concern.document or {"w": 1}
        return {"engine": f"MongoDB {version}", "topology": topology, "database": self.database,
                "write_concern": ", ".join(f"{k}={v}" for k, v in concern.items()), "clock": "the server's ($$NOW)"}

    # -- intracom -------------------------------------------------------------------------------

    def next_seq(self, channel: str) -> int:
        with self._errors():
            doc = self._counters.find_one_and_update({"_id": channel}, {"$inc": {"seq": 1}}, upsert=True,
                                                     return_document=ReturnDocument.AFTER)
        assert doc is not None  # upsert with AFTER always returns the document
        return int(doc["seq"])

    def latest_seq(self, channel: str) -> int:
        with self._errors():
            doc = self._counters.find_one({"_id": channel})
        return int(doc["seq"]) if doc else 0

    def append_message(self, message: Message) -> None:
        with self._errors():
            self._messages.insert_one({
                "_id": message.id, "channel": message.channel, "seq": message.seq, "action": message.action,
                "payload": message.payload, "sender": message.sender, "to": list(message.to),
                "expected": list(message.expected), "at": message.at})

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]:
        with self._errors():
            docs = list(self._messages.find({"channel": channel, "seq": {"$gt": seq}}).sort("seq", 1).limit(limit))
        return [_message(d) for d in docs]

    def get_message(self, message_id: str) -> Message | None:
        with self._errors():
            doc = self._messages.find_one({"_id": message_id})
        return _message(doc) if doc else None

    def record_ack(self, ack: Ack) -> bool:
        with self._errors():
            try:
                self._acks.insert_one({"_id": f"{ack.message_id}/{ack.node}", "messageId": ack.message_id,
                                       "node": ack.node, "at": ack.at, "status": ack.status,
                                       "durationMs": ack.duration_ms})
            except DuplicateKeyError:
                return False
        return True

    def acks(self, message_id: str) -> list[Ack]:
        with self._errors():
            docs = list(self._acks.find({"messageId": message_id}).sort("node", 1))
        return [Ack(d["messageId"], d["node"], _utc(d["at"]), int(d["status"]), int(d["durationMs"])) for d in docs]

    def acked(self, node: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        with self._errors():
            docs = self._acks.find({"node": node, "messageId": {"$in": message_ids}}, {"messageId": 1})
            return {d["messageId"] for d in docs}

    def register_node(self, node: str, channel: str, host: str, pid: int) -> int | None:
        with self._errors():
            doc = self._nodes.find_one_and_update(
                {"_id": f"{channel}/{node}"},
                [{"$set": {"node": _literal(node), "channel": _literal(channel), "lastSeen": "$$NOW",
                           "host": _literal(host), "pid": pid}}],
                upsert=True, return_document=ReturnDocument.AFTER, projection={"cursor": 1})
        return None if doc is None or doc.get("cursor") is None else int(doc["cursor"])

    def save_cursor(self, node: str, channel: str, cursor: int) -> None:
        with self._errors():
            self._nodes.update_one({"_id": f"{channel}/{node}"}, {"$set": {"cursor": cursor}})

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        recent = {"$gte": ["$lastSeen", {"$subtract": ["$$NOW", int(within_s * 1000)]}]}  # the server's clock
        with self._errors():
            docs = self._nodes.find({"channel": channel, "$expr": recent}, {"node": 1}).sort("node", 1)
            return [d["node"] for d in docs]

    def close(self) -> None:
        self.client.close()

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _listing(match: dict[str, Any]) -> list[dict[str, Any]]:
        """The matching documents in name order, each with the server's now and, read on the server
        by the same expressions that decide acquire, its takenAt, timeout and expiry."""
        return [{"$match": match}, {"$sort": {"mutexId": 1, "_id": 1}},
                {"$addFields": {"_now": "$$NOW", "_takenAt": TAKEN_AT, "_timeout": TIMEOUT, "_expires": EXPIRY}}]

    @staticmethod
    def _ours(mutex_id: str, node_id: str, fence: int | None, *also: dict[str, Any]) -> dict[str, Any]:
        """Our lease: taken by ``node_id`` and, given a fence, that very lease — its holder stamp
        still current, so another service's take-over under the same node id is not ours."""
        guard: dict[str, Any] = {"mutexId": mutex_id, "taken": True, "takenBy": node_id}
        checks = list(also)
        if fence is not None:
            guard["fence"] = fence
            checks.append(HOLDER_CURRENT)
        if checks:
            guard["$expr"] = {"$and": checks}
        return guard

    def _ensure_unique_ids(self) -> bool:
        """Create the unique index on ``mutexId`` unless an equivalent one exists; raises
        DuplicateKeyError when documents already share a name."""
        if _has_unique_ids(self._mutexes.index_information()):
            return True
        self._mutexes.create_index("mutexId", unique=True, name=UNIQUE_INDEX)
        return True

    def _duplicates(self) -> list[tuple[str, list[Any]]]:
        """(mutexId, the _ids of its documents) for every name held by more than one document."""
        with self._errors():
            groups = self._mutexes.aggregate([{"$group": {"_id": "$mutexId", "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
                                              {"$match": {"n": {"$gt": 1}}}, {"$sort": {"_id": 1}}])
            return [(str(g["_id"]), g["ids"]) for g in groups]

    def _loss(self, mutex_id: str, node_id: str, fence: int | None, verb: str) -> NotOwnerError:
        return loss_error(mutex_id, node_id, fence, verb, self.get(mutex_id))  # a read on the failure path only

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors become StoreUnavailableError/StoreError/ConfigError, credentials scrubbed."""
        try:
            yield
        except DuplicateKeyError:
            raise
        except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
            reason = self._scrub(str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0])
            raise StoreUnavailableError(f"store {self.url} is unreachable: {reason}",
                                        hint="check the host and port, that the server runs, and the network; "
                                             "connect_timeout sets how long to look for it") from exc
        except OperationFailure as exc:
            message = self._scrub(str((exc.details or {}).get("errmsg") or exc))
            if "auth" in message.lower():
                raise ConfigError(f"store {self.url} refused the credentials: {message}",
                                  hint="check the user, password and authSource in the URL") from None
            raise StoreError(f"store {self.url} failed: {message}") from exc
        except PyMongoError as exc:
            raise StoreError(f"store {self.url} failed: {self._scrub(str(exc))}") from exc

    def _scrub(self, text: str) -> str:
        text = mask_url(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _ensure_ttl(collection: Collection[dict[str, Any]], field: str, seconds: int) -> None:
    """A TTL index ``<field>_ttl`` expiring after ``seconds``; one with another expiry is replaced.

    Drop and create rather than collMod, which not every wire-compatible server offers; between
    the two, documents just live a moment longer. Only init-schema calls this, under mutexctl.schema.
    """
    name = f"{field}_ttl"
    kept = collection.index_information().get(name, {}).get("expireAfterSeconds")
    if kept is not None and int(kept) != seconds:
        collection.drop_index(name)
    collection.create_index(field, name=name, expireAfterSeconds=seconds)


def take_pipeline(mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> list[dict[str, Any]]:
    """The update of a successful acquire: the seed's fields, the next fence, and holder details
    stamped with the takenAt and takenBy they belong to. Fields of older versions are dropped."""
    fence = {"$cond": [{"$and": [{"$in": [{"$type": "$fence"}, ["int", "long", "double"]]},
                                 {"$gte": ["$fence", 0]}, {"$lt": ["$fence", 2**53]}]},
                       {"$toLong": "$fence"}, {"$toLong": 0}]}
    details = {"host": holder.host, "pid": holder.pid, "user": holder.user, "command": holder.command}
    return [{"$set": {
        "_id": {"$ifNull": ["$_id", _literal(mutex_id)]},  # a new document is named after its mutex
        "mutexId": _literal(mutex_id), "taken": True, "takenAt": ISO_NOW, "takenBy": _literal(node_id),
        "timeout": timeout_ms, "fence": {"$add": [fence, 1]},
        "holder": {"$mergeObjects": [_literal(details),
                                     {"takenAt": ISO_NOW, "takenBy": _literal(node_id), "since": "$$NOW"}]}}},
        {"$unset": ["expiresAt", "releasedLate"]}]


def _by_name(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Documents sorted by mutexId, grouped: one group per mutex (more than one: copies)."""
    groups: list[list[dict[str, Any]]] = []
    for doc in docs:
        if groups and groups[-1][0].get("mutexId") == doc.get("mutexId"):
            groups[-1].append(doc)
        else:
            groups.append([doc])
    return groups


def _state(copies: list[dict[str, Any]], now: datetime | None, *, listed: bool = True) -> MutexState:
    """A mutex from its document(s): from a listing (the server read takenAt, timeout and expiry:
    ``_takenAt``, ``_timeout``, ``_expires``), or raw (force_release's report: read here by the same
    rule, on this host's clock). Whatever another service wrote, this never raises."""
    doc = next((d for d in copies if d.get("taken") is True), copies[0])
    taken = doc.get("taken") is True
    expires = doc.get("_expires") if listed else doc_expiry(doc)
    taken_at = doc.get("_takenAt") if listed else taken_at_time(doc.get("takenAt"))
    timeout = doc.get("_timeout") if listed else timeout_ms(doc.get("timeout"))
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    remaining = None
    if taken and isinstance(expires, datetime):
        remaining = max(0, math.ceil((_utc(expires) - now) / timedelta(milliseconds=1)))
    current = holder_is_current(doc)
    problem = None
    if len(copies) > 1:
        problem = duplicate_problem(str(doc.get("mutexId")), [d.get("_id") for d in copies])
    elif taken and remaining is None:
        problem = unreadable(doc) or "its expiry cannot be read"
    return MutexState(
        str(doc.get("mutexId")), taken, _text(doc.get("takenBy")),
        _utc(taken_at) if isinstance(taken_at, datetime) else None,
        _utc(expires) if isinstance(expires, datetime) else None,
        round(timeout) if isinstance(timeout, (int, float)) else None, _fence(doc.get("fence")),
        _holder(doc.get("holder")) if current else None, now, remaining,
        foreign=taken and not current, problem=problem, copies=len(copies),
        since=_since(doc.get("holder")) if current else None)


def duplicate_problem(mutex_id: str, ids: list[Any]) -> str:
    shown = ", ".join(repr(i) for i in ids[:4]) + (", …" if len(ids) > 4 else "")
    return (f"{len(ids)} documents share mutexId {mutex_id!r} (_id {shown}): mutexctl will not take it "
            f"until one is left; delete the others, then run mutexctl init-schema (it adds the unique index)")


def _holder(value: Any) -> Holder | None:
    if not isinstance(value, dict):
        return None
    pid = value.get("pid")
    return Holder(_text(value.get("host")) or "", pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
                  _text(value.get("user")) or "", _text(value.get("command")) or "")


def _since(holder: Any) -> datetime | None:
    since = holder.get("since") if isinstance(holder, dict) else None
    return _utc(since) if isinstance(since, datetime) else None


def _fence(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else repr(value)


def _has_unique_ids(indexes: Mapping[str, Any]) -> bool:
    return any(spec.get("unique") and [tuple(k) for k in spec.get("key", ())] == [("mutexId", 1)]
               for spec in indexes.values())


def _forced(d: dict[str, Any]) -> ForcedRelease:
    fence = d.get("previousFence")
    return ForcedRelease(d["mutexId"], _utc(d["at"]), d["byNode"], d["byUser"], d["byHost"], d["reason"],
                         d.get("previousHolder"), None if fence is None else int(fence))


def _schema(doc: dict[str, Any]) -> SchemaState:
    steps = tuple(AppliedStep(int(s["step"]), _utc(s["appliedAt"]), str(s["appliedBy"])) for s in doc.get("steps", []))
    return SchemaState(int(doc["version"]), _utc(doc["appliedAt"]), str(doc["appliedBy"]), str(doc["toolVersion"]),
                       steps)


def _message(doc: dict[str, Any]) -> Message:
    return Message(doc["_id"], doc["channel"], int(doc["seq"]), doc["action"], doc["payload"], doc["sender"],
                   tuple(doc.get("to") or ()), tuple(doc.get("expected") or ()), _utc(doc["at"]))


def check_server_version(build_info: dict[str, Any]) -> str:
    """The server's version string; StoreUnavailableError below 4.2, which lacks $$NOW."""
    version = str(build_info.get("version", "?"))
    parts = build_info.get("versionArray") or [int(p) for p in version.split(".")[:2] if p.isdigit()]
    if tuple(int(p) for p in parts[:2]) < MIN_SERVER_VERSION:
        raise StoreUnavailableError(f"MongoDB {version} is too old: mutexctl needs 4.2 or newer ($$NOW in updates)",
                                    hint="upgrade the server, or use another one")
    return version


def _secrets(url: str) -> list[str]:
    """The user name and password of a URL, raw and decoded, longest first, to scrub from messages."""
    try:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
    except ValueError:
        return []
    found = {piece for raw in userinfo.split(":", 1) if raw for piece in (raw, unquote(raw))}
    return sorted(found, key=len, reverse=True)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
