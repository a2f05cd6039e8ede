"""The MongoDB store: the seed's ``mutexes`` documents on a shared database, leases on the server's clock.

Document (the seed's five fields kept exactly, so other services can share them; see seed_document):
``{_id, mutexId, taken, takenAt: "2026-11-27T12:03:06.908Z", takenBy, timeout: ms, fence: long,
holder: {takenAt, takenBy, since, host, pid, user, command}}``.

Documents are addressed by ``mutexId`` (a unique index), never by ``_id``: other services create
theirs with an ObjectId. Those mutexctl inserts get ``_id = mutexId``. A lease ends at
``takenAt + timeout`` for every reader, so a renewal rewrites ``takenAt``. Every expiry test and every
new time is computed on the server with ``$$NOW`` (MongoDB >= 4.2). Acquire is one
``find_one_and_update(upsert=True)``: when the mutex is held the filter matches nothing, the upsert
tries to insert the same ``mutexId`` and the unique index refuses it with DuplicateKeyError — which
is the answer "held", decided atomically by the server.

This package is the only importer of pymongo. The store is its parts side by side, each a subclass
of ``base.MongoBase`` (the client, error translation, queued history events, a mutex's state) and
none importing another (an import-linter contract): ``leases`` (exclusive), ``queue`` (waiters),
``slots`` (semaphores, shared holds), ``once`` (run-once markers), ``leaders`` (elections),
``history``, ``status`` (what on-call reads), ``schema``, ``log`` (the broadcast log). What two
parts share is a module of its own: ``exclusive`` (the take that a try and a waiter's turn both
make), ``documents`` (documents <-> records, no driver), ``waiters`` and ``slot_pipelines`` (update
pipelines), ``client``.
"""

from __future__ import annotations

from .history import MongoHistory
from .leaders import MongoLeaders
from .leases import MongoLeases
from .log import MongoLog
from .once import MongoOnce
from .queue import MongoQueue
from .schema import MongoSchema
from .slots import MongoSlots
from .status import MongoStatus


class MongoStore(MongoLeases, MongoQueue, MongoSlots, MongoOnce, MongoLeaders, MongoHistory, MongoStatus, MongoSchema,
                 MongoLog):
    """``mongodb://`` and ``mongodb+srv://`` URLs; TLS, auth and timeouts come from the URI's options."""


__all__ = ["MongoStore"]
