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

This package is the only importer of pymongo. Its parts: ``base`` (client, errors), ``documents``
(documents <-> records, no driver), ``leases``, ``schema``, ``log`` (the broadcast log).
"""

from __future__ import annotations

from .log import MongoLog


class MongoStore(MongoLog):
    """``mongodb://`` and ``mongodb+srv://`` URLs; TLS, auth and timeouts come from the URI's options."""


__all__ = ["MongoStore"]
