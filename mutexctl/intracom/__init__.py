"""Intracom: one instance asks every other instance to run an action, through a log in the store.

A sender takes the channel's next number and appends the message; listeners poll, run a handler per
message meant for them, and write an ack per (message, node). Parts: ``messages`` (ids, payloads,
JSON form), ``cursor`` (a listener's gap-safe place in the log), ``listen`` (the loop),
``handler`` (a command per message), ``acks`` (waiting for them, and what they mean).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, overload

from ..config import Settings
from ..errors import MessageNotFoundError, NoListenersError, SchemaError
from ..flows import EventBell, Flow, call, drive, drive_handing
from ..inputs import validate_action, validate_channel, validate_message_id, validate_recipients
from ..models import DEFAULT_CHANNEL, AckReport, Message, NodeInfo
from ..stores.steps import INTRACOM_STEP
from .acks import wait_for_acks
from .listen import GAP_GRACE_S, LIVE_WINDOW_S, Handler, Stop, deliveries, handle_all
from .messages import message_id, payload_text

if TYPE_CHECKING:
    from ..stores.protocols import LogStore

_UNSENT = datetime.fromtimestamp(0, UTC)  # a draft's time: the store stamps the message with its own clock


class Intracom:
    """Broadcasts of one node on one store. Each method has its flow (``*_flow``, see flows), which
    the asynchronous API drives too."""

    def __init__(self, store: LogStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._ready = False

    def broadcast(self, action: str, payload: object = "{}", *, channel: str = DEFAULT_CHANNEL,
                  to: Sequence[str] = (), require_listeners: bool = False) -> Message:
        return drive(self.broadcast_flow(action, payload, channel=channel, to=to, require_listeners=require_listeners),
                     self.store)

    def broadcast_flow(self, action: str, payload: object = "{}", *, channel: str = DEFAULT_CHANNEL,
                       to: Sequence[str] = (), require_listeners: bool = False) -> Flow[Message]:
        """Append a message to the channel's log for every other listening node (or just ``to``).

        The nodes expected to answer are fixed now: ``to``, else the channel's live listeners minus
        this node. ``payload``: a dict or list, or strict JSON text; at most 1 MiB as JSON. Everything
        is checked before the first write, so a refused broadcast leaves no trace (not even a sequence
        number). With
        ``require_listeners``, no expected node is NoListenersError, and nothing is sent.
        """
        validate_action(action)
        validate_channel(channel)
        recipients = validate_recipients(list(to))
        text = payload_text(payload)
        yield from self._check_schema()
        node = self.settings.node_id
        # The registry is read before the number is taken: see cursor.Cursor.start.
        live = () if recipients else (yield from call("live_nodes", channel, LIVE_WINDOW_S))
        expected = recipients or tuple(n for n in live if n != node)
        if require_listeners and not expected:
            raise NoListenersError(f"no node listens on channel {channel!r} (none sent a heartbeat in the last "
                                   f"{LIVE_WINDOW_S:.0f}s besides this one): nobody would answer; nothing was sent",
                                   remedy="allow-none")
        seq = yield from call("next_seq", channel)
        draft = Message(message_id(channel, seq), channel, seq, action, text, node, recipients, expected, _UNSENT)
        sent: Message = yield from call("append_message", draft)
        return sent

    def nodes(self, channel: str | None = None) -> tuple[datetime, list[NodeInfo]]:
        return drive(self.nodes_flow(channel), self.store)

    def nodes_flow(self, channel: str | None = None) -> Flow[tuple[datetime, list[NodeInfo]]]:
        """The store's now and the registered nodes (of ``channel``, or all), with each one's last
        heartbeat on the store's clock and its place in the log."""
        if channel is not None:
            validate_channel(channel)
        yield from self._check_schema(reading=True)
        found: tuple[datetime, list[NodeInfo]] = yield from call("nodes", channel)
        return found

    def ack_report(self, message_id: str) -> AckReport:
        return drive(self.ack_report_flow(message_id), self.store)

    def ack_report_flow(self, message_id: str) -> Flow[AckReport]:
        """Who acked ``message_id``, who failed and who is silent so far."""
        validate_message_id(message_id)
        yield from self._check_schema(reading=True)
        message = yield from call("get_message", message_id)
        if message is None:
            raise MessageNotFoundError(f"no message {message_id!r} in the log (never sent, or older than the "
                                       "log's retention)", hint="use the id broadcast printed, e.g. default:12")
        return AckReport(message, tuple((yield from call("acks", message.id))))

    def wait_acks(self, message: Message, *, wait_s: float,
                  on_progress: Callable[[AckReport], None] | None = None) -> AckReport:
        return drive(self.wait_acks_flow(message, wait_s=wait_s, on_progress=on_progress), self.store)

    def wait_acks_flow(self, message: Message, *, wait_s: float,
                       on_progress: Callable[[AckReport], None] | None = None) -> Flow[AckReport]:
        """Poll the acks until every expected node answered or ``wait_s`` ends; returns the last report."""
        return wait_for_acks(message, wait_s=wait_s, poll_interval_s=self.settings.poll_interval_s,
                             on_progress=on_progress)

    @overload
    def listen(self, *, channel: str = ..., handler: Handler, include_self: bool = ..., from_start: bool = ...,
               once: bool = ..., stop: threading.Event | None = ..., gap_grace_s: float = ...) -> int: ...

    @overload
    def listen(self, *, channel: str = ..., handler: None = ..., include_self: bool = ..., from_start: bool = ...,
               once: bool = ..., stop: threading.Event | None = ...,
               gap_grace_s: float = ...) -> Generator[Message, int | None, None]: ...

    def listen(self, *, channel: str = DEFAULT_CHANNEL, handler: Handler | None = None, include_self: bool = False,
               from_start: bool = False, once: bool = False, stop: threading.Event | None = None,
               gap_grace_s: float = GAP_GRACE_S) -> int | Generator[Message, int | None, None]:
        """Receive the channel's messages: each one meant for this node is handled, then acked.

        With ``handler`` (message -> exit status; an exception counts as 1) it runs until ``stop``
        is set (or, with ``once``, until the log is drained) and returns how many it handled.
        Without, it returns an iterator of messages; each is acked with status 0 when the next is
        asked for, or when the loop ends (break, ``close()``, garbage collection); ``send(status)``
        acks it with another status and returns the next. A message acked by this node is never
        handled again, also across restarts.
        """
        validate_channel(channel)
        drive(self._check_schema(), self.store)
        flow = self.listen_flow(channel=channel, include_self=include_self, from_start=from_start, once=once,
                                stop=EventBell(stop or threading.Event()), gap_grace_s=gap_grace_s)
        messages = drive_handing(flow, self.store)
        return messages if handler is None else handle_all(messages, handler)

    def listen_flow(self, *, channel: str, include_self: bool, from_start: bool, once: bool, stop: Stop,
                    gap_grace_s: float = GAP_GRACE_S) -> Flow[None]:
        """The messages for this node, handed out (flows.Handed) and acked with the answer."""
        validate_channel(channel)
        yield from self._check_schema()
        yield from deliveries(self.settings.node_id, channel, include_self=include_self, from_start=from_start,
                              once=once, stop=stop, poll_interval_s=self.settings.poll_interval_s,
                              gap_grace_s=gap_grace_s)

    def _check_schema(self, *, reading: bool = False) -> Flow[None]:
        """Broadcast needs its tables (INTRACOM_STEP); checked once, with the newer-store refusal
        before a write. A read (the node list, an ack report) only looks: it makes nothing."""
        if self._ready:
            return
        state = yield from call("schema_state" if reading else "prepare_writes")
        version = state.version if state is not None else None
        if version is None or version < INTRACOM_STEP:
            raise SchemaError(f"broadcast needs the store's schema (version {INTRACOM_STEP} or newer); it is "
                              + ("not initialized" if version is None else f"at version {version}"),
                              hint="run mutexctl init-schema")
        self._ready = not reading  # (a write after a read still prepares the store for writes)


__all__ = ["DEFAULT_CHANNEL", "Intracom"]
