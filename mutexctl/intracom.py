"""Intracom: a broadcast log on top of a store, with per-node acknowledgements.

Senders take a sequence number per channel (one atomic counter increment), then insert the message.
Two senders can therefore commit out of order — 6 visible before 5. A listener must not skip 5, so
its saved position only moves over *contiguous* numbers: a message above a gap is handled at once,
but the position waits at the gap until the missing number appears, or until it has been missing
for ``gap_grace_s`` (its sender died between taking the number and inserting the message).
Nothing here sleeps; ``mutexctl.mutex`` runs the polling loop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from .errors import UsageError
from .models import Ack, Message

MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_CHANNEL = "default"
CHANNEL_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A new listener also looks this far back for messages whose sender counted on it (see Cursor.start).
BACKFILL = 100


def validate_channel(channel: object) -> str:
    if not isinstance(channel, str) or not CHANNEL_FORM.match(channel):
        raise UsageError(f"channel name {channel!r} is not valid",
                         hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return channel


def parse_payload(text: str, *, source: str = "--payload") -> str:
    """Check a JSON payload (at most 1 MiB) and return it as compact JSON text."""
    size = len(text.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise UsageError(f"{source} is {size} bytes; the limit is 1 MiB ({MAX_PAYLOAD_BYTES} bytes)",
                         hint="send a reference (a URL, a key) instead of the data")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                         hint='e.g. --payload \'{"cache": "users"}\'') from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def validate_action(action: object) -> str:
    """An action name follows the rules of a mutex name."""
    from .models import validate_mutex_id

    try:
        return validate_mutex_id(action)
    except UsageError as exc:
        raise UsageError(exc.message.replace("mutex name", "action"), hint=exc.hint) from None


def message_id(channel: str, seq: int) -> str:
    return f"{channel}:{seq}"


def is_for(message: Message, node: str, *, include_self: bool) -> bool:
    """Whether ``node`` should run a handler for ``message``."""
    if message.sender == node and not include_self:
        return False
    return not message.to or node in message.to


@dataclass
class Cursor:
    """A listener's place in one channel's log.

    ``position``: every number up to it is handled (or skipped as a lost gap); it is what is saved.
    ``done_above``: numbers above a gap already handled in this run.
    ``backfill_to``: at or below it, only messages that name this node as expected are for us.
    """

    position: int
    gap_grace_s: float
    backfill_to: int = 0
    done_above: set[int] = field(default_factory=set)
    gap_seen_at: dict[int, float] = field(default_factory=dict)

    @classmethod
    def start(cls, saved: int | None, latest: int, *, from_start: bool, gap_grace_s: float) -> Cursor:
        """From the log's start if asked (what this node acked is still not run again), else resume at
        ``saved``, else (a new listener) from ``latest``.

        A new listener registers before reading ``latest``, and a sender reads the registry before
        taking its number, so a message that expects this listener can carry a number just below
        ``latest``: the last BACKFILL numbers are read too, for messages naming this node.
        """
        if from_start:
            return cls(0, gap_grace_s)
        if saved is not None:
            return cls(saved, gap_grace_s)
        return cls(max(0, latest - BACKFILL), gap_grace_s, backfill_to=latest)

    def wanted(self, message: Message, node: str) -> bool:
        if message.seq <= self.position or message.seq in self.done_above:
            return False
        return message.seq > self.backfill_to or node in message.expected

    def mark(self, seq: int) -> None:
        if seq > self.position:
            self.done_above.add(seq)

    def advance(self, now: float) -> bool:
        """Move ``position`` over contiguous handled numbers, and over gaps older than the grace.

        Returns whether the position moved, i.e. whether it is worth saving.
        """
        start = self.position
        while self.done_above:
            following = self.position + 1
            if following in self.done_above:
                self.done_above.discard(following)
                self.gap_seen_at.pop(following, None)
                self.position = following
                continue
            first_seen = self.gap_seen_at.setdefault(following, now)
            if now - first_seen < self.gap_grace_s:
                break
            self.gap_seen_at.pop(following)  # its sender took the number and never inserted it
            self.position = following
        return self.position != start


@dataclass(frozen=True)
class AckReport:
    """Who acknowledged a message, who failed, and who stayed silent (expected, no ack)."""

    message: Message
    acks: tuple[Ack, ...]

    @property
    def ok(self) -> list[Ack]:
        return [a for a in self.acks if a.status == 0]

    @property
    def failed(self) -> list[Ack]:
        return [a for a in self.acks if a.status != 0]

    @property
    def silent(self) -> list[str]:
        answered = {a.node for a in self.acks}
        return [node for node in self.message.expected if node not in answered]

    @property
    def complete(self) -> bool:
        return not self.silent


def message_doc(message: Message) -> dict[str, object]:
    return {"id": message.id, "channel": message.channel, "seq": message.seq, "action": message.action,
            "payload": json.loads(message.payload), "sender": message.sender, "to": list(message.to),
            "expected": list(message.expected), "at": _iso(message.at)}


def _iso(moment: datetime) -> str:
    from .models import iso_ms

    return iso_ms(moment)
