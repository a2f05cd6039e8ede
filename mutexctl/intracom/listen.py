"""The listen loop: read the log, hand each message meant for this node to a handler, ack it, and
save the position reached; a heartbeat keeps the node in the live-node registry."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from ..identity import host_name
from ..logs import logger
from ..models import Message
from .cursor import Cursor
from .messages import is_for

if TYPE_CHECKING:
    from ..stores.protocols import LogStore

log = logger(__name__)

# Listeners re-register (heartbeat) this often; a sender counts a node live this long after.
HEARTBEAT_S = 10.0
LIVE_WINDOW_S = 30.0
GAP_GRACE_S = 60.0
LOG_BATCH = 100

Handler = Callable[[Message], int]


def deliveries(store: LogStore, node: str, channel: str, *, include_self: bool, from_start: bool, once: bool,
               stop: threading.Event, poll_interval_s: float,
               gap_grace_s: float = GAP_GRACE_S) -> Generator[Message, int | None, None]:
    """Yield each message for this node; the status sent back is its ack (a message this node acked
    is never yielded again, also across restarts)."""
    host, pid = host_name(), os.getpid()
    latest = store.latest_seq(channel)  # before registering: see Cursor.start
    registration = store.register_node(node, channel, host, pid, since=latest)
    cursor = Cursor.start(registration, latest, from_start=from_start, gap_grace_s=gap_grace_s)
    beat = time.monotonic()
    while True:
        batch = store.messages_after(channel, cursor.position, limit=LOG_BATCH)
        mine = [m for m in batch if cursor.wanted(m) and is_for(m, node, include_self=include_self)]
        answered = store.acked(node, [m.id for m in mine])
        stopped = False
        for message in mine:
            if message.id not in answered:
                if stop.is_set():
                    stopped = True  # the position stays before this message: the next run handles it
                    break
                started = time.monotonic()
                try:
                    status = yield message
                except GeneratorExit:  # the loop ended (break, close, garbage collection): it was handed over
                    store.record_ack(message.id, node, 0, round((time.monotonic() - started) * 1000))
                    cursor.mark(message.seq)
                    if cursor.advance(time.monotonic()):
                        store.save_cursor(node, channel, cursor.position)
                    raise
                store.record_ack(message.id, node, status or 0, round((time.monotonic() - started) * 1000))
                log.debug("acked %s with %s", message.id, status or 0)
            cursor.mark(message.seq)
        if not stopped:  # the rest of the batch was not for this node
            for other in batch:
                cursor.mark(other.seq)
        if cursor.advance(time.monotonic()):
            store.save_cursor(node, channel, cursor.position)
        caught_up = len(batch) < LOG_BATCH
        if stop.is_set() or (once and caught_up):  # --once drains the log, batch after batch
            return
        if time.monotonic() - beat >= HEARTBEAT_S:
            store.register_node(node, channel, host, pid, since=latest)
            beat = time.monotonic()
        if caught_up:  # idle until the next poll
            stop.wait(poll_interval_s)


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
