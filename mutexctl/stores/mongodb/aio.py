"""The MongoDB store for an event loop: the same operations (``@operation`` methods, see commands),
sent through PyMongo's asynchronous client. A store method that is not one operation (reading the
history flushes this process's queued events first; init-schema's steps) runs in a worker thread
on the synchronous client, so the loop never waits on it either."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from .base import MongoBase, already_had
from .client import open_client
from .commands import Cmd, builder_of, run_async


class AsyncMongo:
    """Calls on ``store``'s operations, sent by an asynchronous client of the same URL and options."""

    def __init__(self, store: MongoBase, url: str, *, connect_timeout_ms: int) -> None:
        self.store = store
        self.client: AsyncMongoClient[dict[str, Any]] = open_client(
            url, connect_timeout_ms=connect_timeout_ms, scrub=store._scrub, kind=AsyncMongoClient)
        self._db = self.client[store.database]
        self._mutexes = store._mutexes.name

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        build = builder_of(self.store, method)
        if build is None:
            return await asyncio.to_thread(getattr(self.store, method), *args, **kwargs)
        with self.store._errors(probe=False):
            return await run_async(build(self.store, *args, **kwargs), self._send, DuplicateKeyError,
                                   OperationFailure)

    async def close(self) -> None:
        await self.client.close()

    async def _send(self, command: Cmd) -> Any:
        found = self._db[self._mutexes if command.collection in ("", "mutexes") else command.collection]
        options = command.options
        verb = command.verb
        if verb == "find_one_and_update":
            filter_, update = command.args
            after = ReturnDocument.AFTER if options["after"] else ReturnDocument.BEFORE
            return await found.find_one_and_update(filter_, update, upsert=options["upsert"],
                                                   projection=options["projection"], return_document=after)
        if verb == "update_one":
            filter_, update = command.args
            return (await found.update_one(filter_, update, upsert=bool(options.get("upsert")))).matched_count
        if verb == "aggregate":
            return await (await found.aggregate(*command.args)).to_list()
        if verb == "count":
            return await found.count_documents(*command.args, limit=options["limit"])
        if verb == "find_one":
            return await found.find_one(command.args[0], options["projection"])
        if verb == "find":
            cursor = found.find(command.args[0], options["projection"])
            if options["sort"]:
                cursor = cursor.sort(options["sort"])
            if options.get("max_time_ms"):
                cursor = cursor.max_time_ms(options["max_time_ms"])
            if options.get("batch_size"):
                cursor = cursor.batch_size(options["batch_size"])
            return await cursor.limit(options["limit"]).to_list()
        if verb == "delete_one":
            return (await found.delete_one(command.args[0])).deleted_count
        if verb == "insert_one":
            await found.insert_one(*command.args)
            return None
        if verb == "insert_many":
            try:
                await found.insert_many(command.args[0], ordered=False)
            except BulkWriteError as exc:
                return already_had(exc)
            return 0
        if verb == "command":
            return await self._db.command(command.args[0])
        # The schema's verbs (indexes, collections) come with init-schema, which runs in a thread.
        return await asyncio.to_thread(self.store._send, command)
