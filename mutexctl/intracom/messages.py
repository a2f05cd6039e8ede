"""Messages: ids, payload rules, who a message is for, and its JSON form."""

from __future__ import annotations

import json

from ..errors import UsageError
from ..models import Message

MAX_PAYLOAD_BYTES = 1024 * 1024


MAX_PAYLOAD_DEPTH = 100  # arrays and objects inside each other (BSON's own limit is 100 too)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what every JSON reader keeps exactly enough to refuse or store
_EXAMPLE = 'e.g. \'{"cache": "users"}\''


def parse_payload(text: str, *, source: str = "payload") -> str:
    """Check a JSON payload and return it as compact JSON text: strict JSON (no NaN or Infinity,
    numbers in range, integers within 64 bits), valid Unicode, at most 1 MiB and 100 levels deep."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad(source, "is not valid UTF-8 text (it holds bytes or a lone surrogate that are not characters)",
                   hint="send text; encode binary data (base64) inside a JSON string") from None
    if size > MAX_PAYLOAD_BYTES:
        raise _bad(source, f"is {size} bytes; the limit is 1 MiB ({MAX_PAYLOAD_BYTES} bytes)",
                   hint="send a reference (a URL, a key) instead of the data")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64)
    except json.JSONDecodeError as exc:
        raise _bad(source, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                   hint=_EXAMPLE) from None
    except _RefusedError as exc:
        raise _bad(source, f"is not strict JSON: {exc}", hint=exc.hint) from None
    except RecursionError:
        value = None
    if (value is None and text.strip() != "null") or _depth(value) > MAX_PAYLOAD_DEPTH:
        raise _bad(source, f"nests arrays or objects more than {MAX_PAYLOAD_DEPTH} levels deep",
                   hint="flatten it, or send a reference to the data") from None
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        compact.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(source, "holds a lone surrogate escape (such as \\ud800): not a Unicode character",
                   hint="escape whole characters only; a pair \\ud83d\\ude00 is fine") from None
    return compact


def payload_text(payload: object, *, source: str = "payload") -> str:
    """A payload as a program gives it — a dict or list (encoded as strict JSON), or JSON text —
    checked by ``parse_payload``; anything else is a UsageError."""
    if isinstance(payload, str):
        return parse_payload(payload, source=source)
    if not isinstance(payload, dict | list):
        raise _bad(source, f"must be a dict, a list or JSON text, not {type(payload).__name__}",
                   hint="pass the value itself (a dict or list), or its JSON text")
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # a value JSON has no form for; NaN or Infinity
        raise _bad(source, f"cannot be sent as strict JSON: {exc}",
                   hint="send only dicts, lists, strings, finite numbers, booleans and None") from None
    except RecursionError:
        raise _bad(source, f"nests arrays or objects more than {MAX_PAYLOAD_DEPTH} levels deep",
                   hint="flatten it, or send a reference to the data") from None
    return parse_payload(text, source=source)


def _bad(source: str, problem: str, *, hint: str | None) -> UsageError:
    return UsageError(f"{source} {problem}", param=source, hint=hint)


class _RefusedError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _no_constant(name: str) -> object:
    raise _RefusedError(f"{name} is not a JSON value", hint="send null, or the value as a string")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _RefusedError(f"the number {text[:40]} is out of range of a double",
                       hint="send it as a string")
    return value


def _int64(text: str) -> int:
    if len(text) > 21 or not _INT_RANGE[0] <= int(text) <= _INT_RANGE[1]:
        raise _RefusedError(f"an integer of {len(text.lstrip('-'))} digits is beyond 64 bits",
                       hint="send big numbers as strings")
    return int(text)


def _depth(value: object) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar: 0); without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_PAYLOAD_DEPTH:
            break
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def message_id(channel: str, seq: int) -> str:
    return f"{channel}:{seq}"


def is_for(message: Message, node: str, *, include_self: bool) -> bool:
    """Whether ``node`` should run a handler for ``message``."""
    if message.sender == node and not include_self:
        return False
    return not message.to or node in message.to
