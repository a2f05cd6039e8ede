"""The waiters' queue on MongoDB, as a part: a waiter's poll (one findAndModify: join, refresh, or
take its turn) and leaving the line. The pipelines: ``waiters``."""

from __future__ import annotations

from ...errors import LockHeldError
from ...models import LeaseRequest, Turn
from ..common import waiting_turn
from .base import MongoBase
from .commands import DuplicateKey, Operation, find_one_and_update, operation, update_one
from .documents import TOOK, mutex_state, subdocument
from .exclusive import continued_fence, take, taken
from .waiters import leave_pipeline, my_place, wait_pipeline


class MongoQueue(MongoBase):
    @operation
    def wait_turn(self, request: LeaseRequest, *, token: str, waited_ms: int) -> Operation[Turn]:
        return wait_turn(self, request, token, waited_ms)

    @operation
    def leave_queue(self, mutex_id: str, token: str) -> Operation[None]:
        return leave_queue(mutex_id, token)


def wait_turn(store: MongoBase, request: LeaseRequest, token: str, waited_ms: int) -> Operation[Turn]:
    """One findAndModify: join or refresh our place in line, or (our turn come) take the lease."""
    update = wait_pipeline(request.mutex_id, request.node_id, request.timeout_ms, request.holder, token, TOOK)
    for attempt in (1, 2):
        try:
            doc = yield find_one_and_update("mutexes", {"mutexId": request.mutex_id}, update,
                                            upsert=store._unique_ids)
            break
        except DuplicateKey:  # a racing first insert of the name: it exists now, try it
            if attempt == 2:
                raise LockHeldError(request.mutex_id) from None
    if doc is None:  # no document, and no unique index to upsert safely beside another service's copy
        return Turn((yield from take(store, request, waited_ms)))
    if subdocument(doc, "holder").get("token") == token and doc.get("takenBy") == request.node_id:
        return Turn(taken(store, request, waited_ms, (yield from continued_fence(store, request, doc))))
    place, now = my_place(doc, token)
    return waiting_turn(place, mutex_state([doc], now, listed=False))


def leave_queue(mutex_id: str, token: str) -> Operation[None]:
    yield update_one("mutexes", {"mutexId": mutex_id, "waiters.id": token}, leave_pipeline(token))
