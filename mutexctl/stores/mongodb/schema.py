"""Schema on MongoDB: the items of each step (collections, indexes, TTL indexes), the meta record,
the broadcast log's retention, and the server checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...errors import SchemaError, StoreError, StoreUnavailableError
from ...models import SchemaState
from ..common import newer_store_error
from ..steps import HISTORY_RETENTION, LOG_RETENTION, SCHEMA_VERSION, STEPS, UNIQUE_IDS_STEP, Expiry, Index, Table
from .base import MongoBase, log
from .commands import (
    NAMESPACE_EXISTS,
    DuplicateKey,
    Operation,
    Refused,
    aggregate,
    command,
    create_collection,
    create_index,
    drop_index,
    find_one,
    has_collection,
    index_information,
    operation,
    update_upsert,
)
from .documents import has_unique_ids, schema_state
from .operators import MIN_SERVER_VERSION

# The name the server gives ``createIndex({mutexId: 1}, {unique: true})``: a service that runs that
# natural call after init-schema (or before it) meets the same index, not a conflict (code 85). Any
# unique index on exactly {mutexId: 1} counts, whatever its name (an older release made mutexId_unique).
UNIQUE_INDEX = "mutexId_1"
INDEX_CONFLICTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict: the keys exist, otherwise named or made


class MongoSchema(MongoBase):
    @operation
    def prepare_writes(self) -> Operation[SchemaState | None]:
        """Before the first write: refuse a store newer than this tool, and make sure ``mutexId`` is
        unique, which makes acquire atomic (once per store object; later calls answer from memory).

        A store that init-schema brought to UNIQUE_IDS_STEP has the index. On an older one it is
        created here (as SQLite creates its tables on first use); where it cannot be (documents
        already share a name, or the user may not create indexes) acquire looks before it writes.
        """
        return prepare_writes(self)

    @operation
    def schema_state(self) -> Operation[SchemaState | None]:
        return read_schema()

    def apply_schema_step(self, step: int) -> None:
        """Apply the items of step ``step``; creating what exists already is a no-op."""
        try:
            self._unique_ids = self._run(apply_step(self, step)) or self._unique_ids
        except DuplicateKey:
            found = self._run(duplicates())
            names = ", ".join(f"{name!r} ({len(ids)} documents)" for name, ids in found[:5])
            raise SchemaError(f"cannot add the unique index on mutexId: several documents share a name: {names}"
                              + (f" and {len(found) - 5} more" if len(found) > 5 else ""),
                              hint="keep one document per mutexId (the held one), delete the others, then run "
                                   "init-schema again; see README.md, 'Sharing mutexes with other services'") from None

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the version to ``step`` and log it, in one write."""
        self._run(record_step(step, applied_by, tool_version, datetime.now(UTC)))
        self._prepared = None  # prepare_writes reads the new version next time

    def schema_problems(self) -> list[tuple[int, str]]:
        if self._run(unique_ids_present()):
            return []
        return [(UNIQUE_IDS_STEP, f"the unique index on mutexId in collection {self._mutexes.name} is missing")]

    def retention_drift(self) -> tuple[str, int, int] | None:
        """(the setting, seconds a TTL index keeps, seconds configured) for the first index that
        keeps another time than its setting says: the broadcast log's, its node registrations', the
        lease history's."""
        return self._run(retention_drift(self._retained()))

    @operation
    def apply_retention(self) -> Operation[None]:
        return apply_retention(self._retained())

    def _retained(self) -> list[tuple[str, str, str, int]]:
        """(setting, collection, field, seconds configured) of each TTL index a setting rules."""
        return [(setting, table, field, self._seconds(Expiry(table, field, setting)))
                for setting, table, field in ((LOG_RETENTION, "messages", "at"), (LOG_RETENTION, "nodes", "lastSeen"),
                                              (HISTORY_RETENTION, "history", "at"))]

    def server_report(self) -> dict[str, str]:
        """The server's version (refused below 4.2), topology and the write concern in effect."""
        concern = self._mutexes.write_concern.document or {"w": 1}
        return self._run(server_report(self.database, concern))

    @operation
    def store_time(self) -> Operation[datetime]:
        return store_time()

    def _seconds(self, item: Expiry) -> int:
        if item.seconds == LOG_RETENTION:
            return int(self.log_retention_s)
        if item.seconds == HISTORY_RETENTION:
            return int(self.history_retention_s)
        return int(item.seconds)


def apply_step(store: MongoSchema, step: int) -> Operation[bool]:
    """The items of ``step`` (the collection check before creating one is not a race: steps run only
    under mutexctl.schema); whether it made mutexId unique. Copies of a name refuse that (DuplicateKey)."""
    [items] = [s.items for s in STEPS if s.number == step]
    unique = False
    for item in items:
        if isinstance(item, Table):
            if not (yield has_collection(item.name)):
                try:
                    yield create_collection(item.name)
                except Refused as refused:  # made meanwhile (a first insert makes it: the history's, say)
                    if refused.code != NAMESPACE_EXISTS and "already exists" not in str(refused):
                        raise
        elif isinstance(item, Index) and item.fields == ("mutexId",):
            unique = yield from ensure_unique_ids()
        elif isinstance(item, Index):
            yield create_index(item.table, [(f, 1) for f in item.fields], name=item.name, unique=item.unique)
        else:
            yield from ensure_ttl(item.table, item.field, store._seconds(item))
    return unique


def duplicates() -> Operation[list[tuple[str, list[Any]]]]:
    """(mutexId, the _ids of its documents) for every name held by more than one document."""
    groups = yield aggregate("mutexes", [{"$group": {"_id": "$mutexId", "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
                                         {"$match": {"n": {"$gt": 1}}}, {"$sort": {"_id": 1}}])
    return [(str(g["_id"]), g["ids"]) for g in groups]


def record_step(step: int, applied_by: str, tool_version: str, now: datetime) -> Operation[None]:
    yield update_upsert("meta", {"_id": "schema"}, {
        "$set": {"version": step, "appliedAt": now, "appliedBy": applied_by, "toolVersion": tool_version},
        "$push": {"steps": {"step": step, "appliedAt": now, "appliedBy": applied_by}}})


def unique_ids_present() -> Operation[bool]:
    return has_unique_ids((yield index_information("mutexes")))


def retention_drift(retained: list[tuple[str, str, str, int]]) -> Operation[tuple[str, int, int] | None]:
    for setting, table, field, wanted in retained:
        kept = (yield index_information(table)).get(f"{field}_ttl", {}).get("expireAfterSeconds")
        if kept is not None and int(kept) != wanted:
            return setting, int(kept), wanted
    return None


def apply_retention(retained: list[tuple[str, str, str, int]]) -> Operation[None]:
    for _setting, table, field, wanted in retained:
        if f"{field}_ttl" in (yield index_information(table)):
            yield from ensure_ttl(table, field, wanted)


def server_report(database: str, concern: dict[str, Any]) -> Operation[dict[str, str]]:
    build = yield command("buildInfo")  # not server_info(): some servers reject its "buildinfo"
    hello = yield command("hello")
    version = check_server_version(build)
    if hello.get("setName"):
        topology = f"replica set {hello['setName']}"
    elif hello.get("msg") == "isdbgrid":
        topology = "sharded cluster (mongos)"
    else:
        topology = "standalone"
    return {"engine": f"MongoDB {version}", "topology": topology, "database": database,
            "write_concern": ", ".join(f"{k}={v}" for k, v in concern.items()), "clock": "the server's ($$NOW)"}


def store_time() -> Operation[datetime]:
    hello = yield command("hello")
    now = hello.get("localTime")
    if not isinstance(now, datetime):
        raise StoreError("the server's hello reply has no localTime")
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def ensure_ttl(table: str, field: str, seconds: int) -> Operation[None]:
    """A TTL index ``<field>_ttl`` expiring after ``seconds``; one with another expiry is replaced.

    Drop and create rather than collMod, which not every wire-compatible server offers; between
    the two, documents just live a moment longer. Only init-schema does this, under mutexctl.schema.
    """
    name = f"{field}_ttl"
    kept = (yield index_information(table)).get(name, {}).get("expireAfterSeconds")
    if kept is not None and int(kept) != seconds:
        yield drop_index(table, name)
    yield create_index(table, [(field, 1)], name=name, expire_after_s=seconds)


def read_schema() -> Operation[SchemaState | None]:
    """The ``meta`` record, or None on a store never initialized."""
    doc = yield find_one("meta", {"_id": "schema"})
    return None if doc is None else schema_state(doc)


def ensure_unique_ids() -> Operation[bool]:
    """Create the unique index on ``mutexId`` unless an equivalent one exists; a store whose documents
    already share a name refuses it (DuplicateKey)."""
    if has_unique_ids((yield index_information("mutexes"))):
        return True
    try:
        yield create_index("mutexes", [("mutexId", 1)], name=UNIQUE_INDEX, unique=True)
    except Refused as refused:
        if refused.code not in INDEX_CONFLICTS:
            raise
        if has_unique_ids((yield index_information("mutexes"))):  # made meanwhile, under another name
            return True
        raise SchemaError("mutexId cannot be made unique: an index of the collection conflicts (one on mutexId "
                          f"that is not unique, or another under the name {UNIQUE_INDEX}): {refused}",
                          hint="drop the conflicting index (a unique index on mutexId, of any name, is what "
                               "mutexctl needs), then initialize the schema again") from None
    return True


def prepare_writes(store: MongoBase) -> Operation[SchemaState | None]:
    if store._prepared is not None:
        return store._prepared[0]
    state = yield from read_schema()
    if state is not None and state.version > SCHEMA_VERSION:
        raise newer_store_error(state.version)
    if state is not None and state.version >= UNIQUE_IDS_STEP:
        store._unique_ids = True
    else:
        store._unique_ids = yield from unique_ids_if_allowed(store)
    store._prepared = (state,)
    return state


def unique_ids_if_allowed(store: MongoBase) -> Operation[bool]:
    """Whether mutexId is unique now: the index made if it can be; not where documents already share a
    name or the user may not create indexes (acquire then looks before it writes)."""
    try:
        return (yield from ensure_unique_ids())
    except (DuplicateKey, Refused, SchemaError) as exc:
        log.debug("no unique index on mutexId: %s", store._scrub(str(exc)))
        return False


def check_server_version(build_info: dict[str, Any]) -> str:
    """The server's version string; StoreUnavailableError below MIN_SERVER_VERSION (4.2: $$NOW)."""
    version = str(build_info.get("version", "?"))
    parts = build_info.get("versionArray") or [int(p) for p in version.split(".")[:2] if p.isdigit()]
    if tuple(int(p) for p in parts[:2]) < MIN_SERVER_VERSION:
        needs = ".".join(map(str, MIN_SERVER_VERSION))
        raise StoreUnavailableError(f"MongoDB {version} is too old: mutexctl needs {needs} or newer ($$NOW in updates)",
                                    hint="upgrade the server, or use another one")
    return version
