"""Messages: ids, payload rules, who a message is for, and its JSON form."""

from __future__ import annotations

import json

from ..errors import UsageError
from ..models import Message, iso_ms

MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_CHANNEL = "default"


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


def message_id(channel: str, seq: int) -> str:
    return f"{channel}:{seq}"


def is_for(message: Message, node: str, *, include_self: bool) -> bool:
    """Whether ``node`` should run a handler for ``message``."""
    if message.sender == node and not include_self:
        return False
    return not message.to or node in message.to


def message_doc(message: Message) -> dict[str, object]:
    return {"id": message.id, "channel": message.channel, "seq": message.seq, "action": message.action,
            "payload": json.loads(message.payload), "sender": message.sender, "to": list(message.to),
            "expected": list(message.expected), "at": iso_ms(message.at)}
