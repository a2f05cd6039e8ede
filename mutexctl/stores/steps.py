"""The numbered schema steps, declared once: what each step adds to a store. Each store applies
the items in its own way (``apply_schema_step``); ``mutexctl.schema`` runs them in order.

Steps are idempotent: applying one twice does no harm, because a run killed between applying a step
and recording it leaves that step to the next run.
"""

from __future__ import annotations

from typing import NamedTuple

# How long what the TTL indexes (or, on SQLite, pruning on write) keep.
FORCED_RETENTION_S = 90 * 24 * 3600  # forced-release records
HISTORY_RETENTION_S = 30 * 24 * 3600  # the lease history, unless history_retention says otherwise
LOG_RETENTION_S = 7 * 24 * 3600
LOG_RETENTION = "log_retention"  # a TTL whose length is the log_retention setting
HISTORY_RETENTION = "history_retention"  # ... the history_retention setting


class Table(NamedTuple):
    """A collection (MongoDB) or table (SQLite); its columns are the store's business."""

    name: str


class Index(NamedTuple):
    table: str
    fields: tuple[str, ...]
    name: str
    unique: bool = False


class Expiry(NamedTuple):
    """Rows of ``table`` go ``seconds`` after ``field`` (or after the log_retention setting):
    a TTL index on MongoDB; an index that makes pruning cheap on SQLite."""

    table: str
    field: str
    seconds: int | str  # or LOG_RETENTION / HISTORY_RETENTION: the setting's


class Step(NamedTuple):
    number: int
    title: str
    items: tuple[Table | Index | Expiry, ...]


STEPS: tuple[Step, ...] = (
    Step(1, "mutexes: the collection (table) and an index on holders",
         (Table("mutexes"), Index("mutexes", ("takenBy",), "takenBy"))),
    Step(2, "lease history: forced releases, kept 90 days (TTL index)",
         (Table("forced_releases"), Expiry("forced_releases", "at", FORCED_RETENTION_S))),
    Step(3, "broadcast: the message log (kept 7 days, TTL), per-node acks and the live-node registry",
         (Table("counters"), Table("messages"), Index("messages", ("channel", "seq"), "channel_seq", unique=True),
          Expiry("messages", "at", LOG_RETENTION), Table("acks"),
          Index("acks", ("messageId", "node"), "message_node", unique=True), Table("nodes"),
          Index("nodes", ("node", "channel"), "node_channel", unique=True),
          # A node's registration (its place in the log) lives as long as the messages it may still
          # have to handle: init-schema moves a store set up with the former 24 h to the log's retention.
          Expiry("nodes", "lastSeen", LOG_RETENTION))),
    Step(4, "mutexes: a unique index on mutexId (documents other services create are found by it)",
         (Index("mutexes", ("mutexId",), "mutexId_1", unique=True),)),
    Step(5, "lease history: acquires, releases, take-overs, forced releases and losses (kept 30 days, TTL)",
         (Table("history"), Index("history", ("mutexId", "at"), "mutex_at"),
          Expiry("history", "at", HISTORY_RETENTION))),
)
SCHEMA_VERSION = STEPS[-1].number
UNIQUE_IDS_STEP = 4  # from this step on, mutexId is unique in every store
INTRACOM_STEP = 3  # broadcast needs the store at this step or later
