"""The waiters' queue on MongoDB, as a part: a waiter's poll (one findAndModify: join, refresh, or
take its turn) and leaving the line. The pipelines: ``waiters``."""

from __future__ import annotations

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import LockHeldError
from ...models import LeaseRequest, Turn
from ..common import waiting_turn
from .base import MongoBase
from .documents import TOOK, mutex_state, subdocument
from .exclusive import take, taken
from .waiters import leave_pipeline, my_place, wait_pipeline


class MongoQueue(MongoBase):
    def wait_turn(self, request: LeaseRequest, *, token: str, waited_ms: int) -> Turn:
        mutex_id, node_id, timeout_ms, holder = request.mutex_id, request.node_id, request.timeout_ms, request.holder
        update = wait_pipeline(mutex_id, node_id, timeout_ms, holder, token, TOOK)
        with self._errors():
            for attempt in (1, 2):
                try:
                    doc = self._mutexes.find_one_and_update({"mutexId": mutex_id}, update, upsert=self._unique_ids,
                                                            return_document=ReturnDocument.AFTER)
                    break
                except DuplicateKeyError:  # a racing first insert of the name: it exists now, try it
                    if attempt == 2:
                        raise LockHeldError(mutex_id) from None
        if doc is None:  # no document, and no unique index to upsert safely beside another service's copy
            return Turn(take(self, mutex_id, node_id, timeout_ms, holder, waited_ms))
        if subdocument(doc, "holder").get("token") == token and doc.get("takenBy") == node_id:
            return Turn(taken(self, mutex_id, node_id, timeout_ms, holder, waited_ms, doc))
        place, now = my_place(doc, token)
        return waiting_turn(place, mutex_state([doc], now, listed=False))

    def leave_queue(self, mutex_id: str, token: str) -> None:
        with self._errors():
            self._mutexes.update_one({"mutexId": mutex_id, "waiters.id": token}, leave_pipeline(token))
