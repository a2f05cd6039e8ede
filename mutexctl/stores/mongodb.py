"""The MongoDB store: the seed's ``mutexes`` documents on a shared database, leases on the server's clock.

Document (``_id`` = ``mutexId``; the seed's fields kept exactly, so other services can share them):
``{_id, mutexId, taken, takenAt: "2026-11-27T12:03:06.908Z", takenBy, timeout: ms, expiresAt: Date,
fence: long, holder: {host, pid, user, command}}``.

Every expiry test and every new time is computed on the server with ``$$NOW`` (MongoDB >= 4.2), and a
document written by another service in the seed's shape only (no ``expiresAt``, no ``fence``) expires
at ``takenAt + timeout``. Acquire is one ``find_one_and_update(upsert=True)``: when the mutex is held
the filter matches nothing, the upsert tries to insert the same ``_id`` and the server refuses it with
DuplicateKeyError — which is the answer "held", decided atomically by the unique ``_id`` index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import (ConfigurationError, ConnectionFailure, DuplicateKeyError, InvalidURI, OperationFailure,
                            PyMongoError, ServerSelectionTimeoutError)

from ..errors import ConfigError, LockHeldError, NotOwnerError, StoreError, StoreUnavailableError
from ..models import Ack, ForcedRelease, Holder, Lease, Message, MutexState, Overview, parse_iso
from ..schema import HISTORY_RETENTION_S, LOG_RETENTION_S, NODE_RETENTION_S, AppliedStep, SchemaState
from . import loss_error, mask_url, released_late_error

MIN_SERVER_VERSION = (4, 2)  # $$NOW and update pipelines

# When a lease ends: our expiresAt, or for a seed-shaped document takenAt (a string) + timeout (ms).
# An unparsable takenAt gives null, and null sorts before every date: such a lease counts as expired.
_EXPIRY: dict[str, Any] = {"$ifNull": ["$expiresAt", {"$add": [
    {"$dateFromString": {"dateString": "$takenAt", "onError": None, "onNull": None}}, "$timeout"]}]}
_EXPIRED = {"$lte": [_EXPIRY, "$$NOW"]}
_ISO_NOW = {"$dateToString": {"date": "$$NOW", "format": "%Y-%m-%dT%H:%M:%S.%LZ", "timezone": "UTC"}}


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

    # -- the store protocol -------------------------------------------------------------------

    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> Lease:
        free_or_expired = {"_id": mutex_id, "$or": [{"taken": {"$ne": True}}, {"$expr": _EXPIRED}]}
        take = [{"$set": {
            "mutexId": _literal(mutex_id), "taken": True, "takenAt": _ISO_NOW, "takenBy": _literal(node_id),
            "timeout": timeout_ms, "expiresAt": {"$add": ["$$NOW", timeout_ms]},
            "fence": {"$add": [{"$ifNull": ["$fence", {"$toLong": 0}]}, 1]},
            "holder": _literal({"host": holder.host, "pid": holder.pid, "user": holder.user,
                                "command": holder.command})}}]
        with self._errors():
            try:
                doc = self._mutexes.find_one_and_update(free_or_expired, take, upsert=True,
                                                        return_document=ReturnDocument.AFTER,
                                                        projection={"fence": 1, "takenAt": 1, "expiresAt": 1})
            except DuplicateKeyError:
                raise LockHeldError(mutex_id) from None
        assert doc is not None  # upsert with AFTER always returns the document
        return Lease(mutex_id, node_id, int(doc["fence"]), timeout_ms, parse_iso(doc["takenAt"]),
                     _utc(doc["expiresAt"]))

    def renew(self, lease: Lease) -> Lease:
        ours_and_live = {**self._ours(lease.mutex_id, lease.node_id, lease.fence), "$expr": {"$gt": [_EXPIRY, "$$NOW"]}}
        extend = [{"$set": {"expiresAt": {"$add": ["$$NOW", lease.timeout_ms]}, "timeout": lease.timeout_ms}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(ours_and_live, extend, return_document=ReturnDocument.AFTER,
                                                    projection={"expiresAt": 1})
        if doc is None:
            raise self._loss(lease.mutex_id, lease.node_id, lease.fence, "renew")
        return Lease(lease.mutex_id, lease.node_id, lease.fence, lease.timeout_ms, lease.taken_at,
                     _utc(doc["expiresAt"]), lease.local_deadline)

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        # One write: free it, and tell in the same operation whether it had already expired.
        free = [{"$set": {"taken": False, "releasedLate": _EXPIRED}}]
        with self._errors():
            doc = self._mutexes.find_one_and_update(self._ours(mutex_id, node_id, fence), free,
                                                    return_document=ReturnDocument.AFTER,
                                                    projection={"releasedLate": 1, "fence": 1})
        if doc is None:
            raise self._loss(mutex_id, node_id, fence, "release")
        if doc.get("releasedLate"):
            raise released_late_error(mutex_id, doc.get("fence"))

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        with self._errors():
            before = self._mutexes.find_one_and_update({"_id": mutex_id, "taken": True}, {"$set": {"taken": False}},
                                                       return_document=ReturnDocument.BEFORE)
            if before is None:
                return None
            self._forced.insert_one({"mutexId": mutex_id, "at": datetime.now(timezone.utc), "byNode": by_node,
                                     "byUser": by.user, "byHost": by.host, "reason": reason,
                                     "previousHolder": before.get("takenBy"), "previousFence": before.get("fence", 0)})
        return self._state(before, None)

    def get(self, mutex_id: str) -> MutexState | None:
        """One aggregate: the document, the server's now and the lease's time left on that clock."""
        with self._errors():
            docs = list(self._mutexes.aggregate(self._listing({"_id": mutex_id})))
        return self._state(docs[0], docs[0]["_now"]) if docs else None

    def overview(self, mutex_id: str | None, forced_limit: int) -> Overview:
        """One aggregate: $facet always yields one document (even from an empty collection), to which
        the server's now, the forced-release history and the schema record are joined."""
        match = {} if mutex_id is None else {"_id": mutex_id}
        pipeline = [
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
        return Overview(tuple(self._state(d, d["_now"]) for d in doc["mutexes"]),
                        tuple(_forced(d) for d in doc.get("forced", ())),
                        _schema(doc["meta"][0]) if doc["meta"] else None, _utc(doc["now"]))

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        query = {} if mutex_id is None else {"mutexId": mutex_id}
        with self._errors():
            return [_forced(d) for d in self._forced.find(query).sort("_id", -1).limit(limit)]

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
            else:
                raise ValueError(f"no schema step {step}")

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
        """The matching documents in name order, each with the server's now and its time left."""
        return [{"$match": match}, {"$sort": {"_id": 1}},
                {"$addFields": {"_now": "$$NOW", "_left": {"$subtract": [_EXPIRY, "$$NOW"]}}}]

    def _state(self, doc: dict[str, Any], now: datetime | None) -> MutexState:
        taken = bool(doc.get("taken"))
        taken_at = _parse_taken_at(doc.get("takenAt"))
        expires = doc.get("expiresAt")
        if expires is None and taken_at is not None and isinstance(doc.get("timeout"), (int, float)):
            expires = taken_at + timedelta(milliseconds=doc["timeout"])
        left = doc.get("_left")
        remaining = max(0, int(left)) if taken and left is not None else (0 if taken else None)
        holder = doc.get("holder") if isinstance(doc.get("holder"), dict) else None
        return MutexState(
            doc.get("mutexId") or str(doc["_id"]), taken, doc.get("takenBy"), taken_at,
            _utc(expires) if expires else None, doc.get("timeout"), int(doc.get("fence") or 0),
            Holder(str(holder.get("host")), int(holder.get("pid") or 0), str(holder.get("user")),
                   str(holder.get("command"))) if holder else None,
            _utc(now) if now else datetime.now(timezone.utc), remaining)

    @staticmethod
    def _ours(mutex_id: str, node_id: str, fence: int | None) -> dict[str, Any]:
        guard: dict[str, Any] = {"_id": mutex_id, "taken": True, "takenBy": node_id}
        if fence is not None:
            guard["fence"] = fence
        return guard

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


def _forced(d: dict[str, Any]) -> ForcedRelease:
    return ForcedRelease(d["mutexId"], _utc(d["at"]), d["byNode"], d["byUser"], d["byHost"], d["reason"],
                         d.get("previousHolder"), int(d.get("previousFence") or 0))


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


def _parse_taken_at(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_iso(value)
    return None
