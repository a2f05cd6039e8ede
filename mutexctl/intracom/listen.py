"""The listen loop: read the log, hand each message meant for this node to a handler, ack it, and
save the position reached; a heartbeat keeps the node in the live-node registry."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import Protocol

from ..errors import StoreError
from ..flows import Flow, Handed, LoopEnded, call, nap
from ..identity import host_name
from ..logs import logger
from ..models import Message
from .cursor import Cursor
from .messages import is_for

log = logger(__name__)

# Listeners re-register (heartbeat) this often; a sender counts a node live this long after.
HEARTBEAT_S = 10.0
LIVE_WINDOW_S = 30.0
GAP_GRACE_S = 60.0
LOG_BATCH = 100

Handler = Callable[[Message], int]


class Stop(Protocol):
    """What ends a listen: set from elsewhere, it also ends the idle nap between polls (flows.EventBell
    for a thread, an asyncio.Event's for the event loop)."""

    def is_set(self) -> bool: ...

    def sleep(self, seconds: float) -> bool: ...

    async def asleep(self, seconds: float) -> bool: ...


def deliveries(node: str, channel: str, *, include_self: bool, from_start: bool, once: bool, stop: Stop,
               poll_interval_s: float, gap_grace_s: float = GAP_GRACE_S) -> Flow[None]:
    """Hand out each message for this node (flows.Handed); the answer is its ack (a message this
    node acked is never handed out again, also across restarts). A consumer that stops asking
    (LoopEnded) acks the message it was handed with status 0."""
    host, pid = host_name(), os.getpid()
    latest = yield from call("latest_seq", channel)  # before registering: see Cursor.start
    registration = yield from call("register_node", node, channel, host, pid, since=latest)
    cursor = Cursor.start(registration, latest, from_start=from_start, gap_grace_s=gap_grace_s)
    beat = time.monotonic()
    while True:
        batch: list[Message] = yield from call("messages_after", channel, cursor.position, limit=LOG_BATCH)
        mine = [m for m in batch if cursor.wanted(m) and is_for(m, node, include_self=include_self)]
        answered = yield from call("acked", node, [m.id for m in mine])
        stopped = False
        for message in mine:
            if message.id not in answered:
                if stop.is_set():
                    stopped = True  # the position stays before this message: the next run handles it
                    break
                started = time.monotonic()
                try:
                    status = yield Handed(message)
                except LoopEnded:  # it was handed over
                    yield from call("record_ack", message.id, node, 0, round((time.monotonic() - started) * 1000))
                    cursor.mark(message.seq)
                    if cursor.advance(time.monotonic()):
                        yield from call("save_cursor", node, channel, cursor.position)
                    yield from _leave(node, channel)
                    return
                yield from call("record_ack", message.id, node, status or 0,
                                round((time.monotonic() - started) * 1000))
                log.debug("acked %s with %s", message.id, status or 0)
            cursor.mark(message.seq)
        if not stopped:  # the rest of the batch was not for this node
            for other in batch:
                cursor.mark(other.seq)
        if cursor.advance(time.monotonic()):
            yield from call("save_cursor", node, channel, cursor.position)
        caught_up = len(batch) < LOG_BATCH
        if stop.is_set() or (once and caught_up):  # --once drains the log, batch after batch
            yield from _leave(node, channel)
            return
        if time.monotonic() - beat >= HEARTBEAT_S:
            yield from call("register_node", node, channel, host, pid, since=latest)
            beat = time.monotonic()
        if caught_up:  # idle until the next poll
            yield from nap(poll_interval_s, stop)


def _leave(node: str, channel: str) -> Flow[None]:
    """A listener that stops by itself says so (best effort: else it just goes silent)."""
    try:
        yield from call("leave_node", node, channel)
    except StoreError:
        log.info("could not record that %s left channel %s", node, channel)


def handle_all(messages: Generator[Message, int | None, None], handler: Handler) -> int:
    """Run ``handler`` on every delivered message (an exception counts as status 1); how many ran."""
    handled = 0
    try:
        message = next(messages)
        while True:
            try:
                status = handler(message)
            except Exception:
                log.exception("handler failed on %s", message.id)
                status = 1
            handled += 1
            message = messages.send(status)
    except StopIteration:
        return handled
