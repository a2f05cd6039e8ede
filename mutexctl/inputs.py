"""Every input parser: durations, names, node ids, channels, actions, tokens, reasons.

Each input is bounded (the limits below, in the README), checked before anything is written, and
refused with one line that never echoes more than a short prefix of a long or hostile value.
"""

from __future__ import annotations

import math
import re
import reprlib

from .errors import UsageError

MAX_DURATION_S = 365 * 24 * 3600.0
MAX_DURATION_CHARS = 64
MAX_NAME_LENGTH = 255  # mutex names, node ids, actions
MAX_REASON_CHARS = 1000  # a forced release's reason
MAX_TOKEN = 2**63 - 1  # fences are 64-bit integers in both stores
CHANNEL_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NUMBER = re.compile(r"(?:\d+(?:\.\d+)?|\.\d+)")
_UNITS = "ms|min|w|d|h|m|s"  # (longer spellings first: "ms" and "min" are not "m")
_PART = re.compile(rf"(\d+(?:\.\d+)?|\.\d+)({_UNITS})")
_COMPOUND = re.compile(rf"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:{_UNITS}))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
DURATION_FORM = ("a number with a unit ms, s, m (or min), h, d or w, or several (e.g. 500ms, 30s, 5min, 1h30m, 2w); "
                 "a bare number is seconds")


def shown(value: object, limit: int = 40) -> str:
    """A value as an error message quotes it, cut at about ``limit`` characters. Never the whole of a
    nested value: a YAML alias bomb's lists share themselves a billion times over."""
    if isinstance(value, str):
        text = repr(value) if len(value) <= limit else repr(value[:limit])[:-1] + "…'"
    else:
        short = reprlib.Repr()
        short.maxlevel, short.maxlist, short.maxdict, short.maxtuple, short.maxset = 2, 4, 4, 4, 4
        short.maxstring = short.maxother = 40
        text = short.repr(value)
    return text if len(text) <= limit + 8 else text[: limit + 4] + "…"


def parse_duration(value: object, *, what: str = "duration", allow_inf: bool = False,
                   allow_zero: bool = True) -> float:
    """``500ms``, ``30s``, ``2m``/``2min``, ``1h30m``, ``10m00s``, ``3d04h``, ``2w``, ``12`` (seconds) ->
    seconds; ``inf`` (or ``infinity``, ``forever``) if allowed. The forms mutexctl prints are read back."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{what} must be a duration, not {type(value).__name__}", param=what,
                         hint=f"use {DURATION_FORM}")
    text = str(value).strip().lower()
    extra = ", or inf" if allow_inf else ""
    if len(text) > MAX_DURATION_CHARS:
        raise UsageError(f"{what} {shown(value)} is not a duration ({len(text)} characters)", param=what,
                         hint=f"use {DURATION_FORM}{extra}")
    if allow_inf and text in ("inf", "infinity", "forever"):
        return math.inf
    if _NUMBER.fullmatch(text):
        seconds = float(text)
    elif _COMPOUND.fullmatch(text):
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    else:
        problem = "is negative" if text.startswith("-") else "is not a duration"
        raise UsageError(f"{what} {shown(value)} {problem}", param=what, hint=f"use {DURATION_FORM}{extra}")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise UsageError(f"{what} {shown(value)} is too large; the limit is 365 days", param=what,
                         hint="use inf to wait for ever" if allow_inf else f"use {DURATION_FORM}")
    if seconds == 0 and not allow_zero:
        raise UsageError(f"{what} must be greater than zero", param=what, hint=f"use {DURATION_FORM}")
    return seconds


def parse_timeout_ms(value: object, *, what: str = "timeout") -> int:
    """A lease timeout in whole milliseconds, at least 1 ms."""
    milliseconds = round(parse_duration(value, what=what, allow_zero=False) * 1000)
    if milliseconds < 1:
        raise UsageError(f"{what} {shown(value)} is shorter than 1ms", param=what, hint=f"use {DURATION_FORM}")
    return milliseconds


def parse_wait_s(value: object, *, what: str = "wait") -> float:
    return parse_duration(value, what=what, allow_inf=True)


def validate_node_id(node_id: object, *, what: str = "node id") -> str:
    if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_NAME_LENGTH \
            or not node_id.isprintable() or node_id != node_id.strip():
        length = f" ({len(node_id)} characters)" if isinstance(node_id, str) and len(node_id) > 40 else ""
        raise UsageError(f"{what} {shown(node_id)} is not valid{length}", param=what,
                         hint=f"use 1-{MAX_NAME_LENGTH} printable characters, e.g. api-1")
    return node_id


def validate_mutex_id(name: object) -> str:
    """Check a mutex name: 1-255 printable characters, not starting with ``$``.

    ``$`` is refused because MongoDB reads such strings as field paths inside update pipelines.
    """
    if not isinstance(name, str):
        raise UsageError(f"mutex name must be a string, not {type(name).__name__}")
    hint = f"use 1-{MAX_NAME_LENGTH} printable characters, e.g. 'billing-nightly-export'"
    if not name:
        raise UsageError("mutex name is empty", hint=hint)
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"mutex name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}", hint=hint)
    bad = next((ch for ch in name if not ch.isprintable()), None)
    if bad is not None:
        raise UsageError(f"mutex name contains the control character {bad!r}", hint=hint)
    if name.startswith("$"):
        raise UsageError(f"mutex name {name!r} starts with '$'", hint=hint)
    if name != name.strip():
        raise UsageError(f"mutex name {name!r} starts or ends with a space", hint=hint)
    return name


def validate_channel(channel: object) -> str:
    if not isinstance(channel, str) or not CHANNEL_FORM.fullmatch(channel):
        raise UsageError(f"channel name {shown(channel)} is not valid",
                         hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return channel


def validate_action(action: object) -> str:
    """An action name follows the rules of a mutex name."""
    try:
        return validate_mutex_id(action)
    except UsageError as exc:
        raise UsageError(exc.message.replace("mutex name", "action"), hint=exc.hint) from None


MAX_RECIPIENTS = 1000  # nodes a broadcast may name
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[1-9][0-9]{0,18}")


def validate_message_id(message_id: object) -> str:
    """A message id as broadcast printed it: ``channel:number``."""
    if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
        raise UsageError(f"{shown(message_id)} is not a message id",
                         hint="use the id broadcast printed, e.g. default:12")
    return message_id


def validate_recipients(nodes: object) -> tuple[str, ...]:
    """The nodes a broadcast names: at most MAX_RECIPIENTS node ids."""
    items = tuple(nodes) if isinstance(nodes, (list, tuple)) else ()
    if len(items) > MAX_RECIPIENTS:
        raise UsageError(f"{len(items)} recipients; the limit is {MAX_RECIPIENTS}", remedy="recipients")
    return tuple(validate_node_id(node, what="recipient") for node in items)


def validate_token(token: object, *, what: str = "token") -> int:
    """A fence, as acquire printed it: 1 to 2^63-1."""
    if isinstance(token, bool) or not isinstance(token, int) or not 1 <= token <= MAX_TOKEN:
        raise UsageError(f"{what} {shown(token)} is not a fence", param=what,
                         hint="use the number the acquire gave (1 or more)")
    return token


def validate_reason(reason: object) -> str:
    """A forced release's reason: 1 to 1000 characters (kept on the record as given, trimmed)."""
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("a forced release needs a reason", remedy="reason")
    text = reason.strip()
    if len(text) > MAX_REASON_CHARS:
        raise UsageError(f"the reason is {len(text)} characters long; the limit is {MAX_REASON_CHARS}",
                         hint="say why in a sentence, and point to the incident for the rest")
    return text


def validate_once_key(key: object) -> str:
    """A run-once key (a release version, a date, a constant): 1-255 printable characters."""
    if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH or not key.isprintable() \
            or key != key.strip():
        raise UsageError(f"once key {shown(key)} is not valid", param="once key",
                         hint=f"use 1-{MAX_NAME_LENGTH} printable characters, e.g. a release version (v42) or a date")
    return key
