"""What a caller asks for, resolved once: a LeaseRequest (the timeout in ms, the wait in seconds, the
kind of lease, the node and the holder), and the forms those values arrive in."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from .config import Settings
from .errors import UsageError
from .identity import host_name, user_name
from .inputs import parse_timeout_ms, parse_wait_s, shown, validate_mutex_id, validate_node_id
from .models import EXCLUSIVE, SEMAPHORE, SHARED, Holder, LeaseRequest
from .redact import mask_command

# A duration: "30s"-style text, a number of seconds, or a timedelta.
Duration = str | float | int | timedelta

MAX_LIMIT = 1000  # slots of a semaphore
MAX_COMMAND_CHARS = 500  # of a holder's command line kept for on-call


def resolve(settings: Settings, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
            node_id: str | None = None, command: str | None = None, exec_mode: bool = False,
            limit: int | None = None, shared: bool = False, via: str | None = None) -> LeaseRequest:
    """The request for ``mutex_id``: each value as given, else the mutex's entry in the settings, else
    the default; ``command``: the holder's command line (default: this process's)."""
    validate_mutex_id(mutex_id)
    kind = lease_kind(limit, shared)
    timeout_ms = settings.timeout_for(mutex_id) if timeout is None else duration_ms(timeout, "timeout")
    wait_s = settings.wait_for(mutex_id) if wait is None else wait_seconds(wait)
    node = settings.node_id if node_id is None else validate_node_id(node_id, what="node id")
    holder = this_process(command)._replace(exec_mode=exec_mode, via=via)
    return LeaseRequest(mutex_id, node, timeout_ms, holder, wait_s, kind, limit)


def duration_ms(value: Duration, what: str) -> int:
    """A lease timeout in whole milliseconds (at least 1): parsed once, wherever it came from."""
    if not isinstance(value, timedelta):
        return parse_timeout_ms(value, what=what)
    milliseconds = round(value / timedelta(milliseconds=1))
    if milliseconds < 1:
        raise UsageError(f"{what} {value} is shorter than 1ms", param=what)
    return milliseconds


MAX_VALUE_CHARS = 4096  # an elected leader's announced value


def validate_value(value: object) -> str:
    """A leader's value: text, at most MAX_VALUE_CHARS characters."""
    if not isinstance(value, str):
        raise UsageError(f"value must be text, not {type(value).__name__}", param="value")
    if len(value) > MAX_VALUE_CHARS or "\x00" in value:
        raise UsageError(f"value {shown(value)} is too long or holds a NUL", param="value",
                         hint=f"at most {MAX_VALUE_CHARS} characters")
    return value


def wait_seconds(value: Duration, what: str = "wait") -> float:
    if not isinstance(value, timedelta):
        return parse_wait_s(value, what=what)
    if value < timedelta(0):
        raise UsageError(f"{what} {value} is negative", param=what)
    return value.total_seconds()


def lease_kind(limit: int | None, shared: bool) -> str:
    """EXCLUSIVE, SEMAPHORE (``limit`` slots) or SHARED; a bad combination is a UsageError."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT):
        raise UsageError(f"limit {shown(limit)} is not a number of slots", param="limit", hint=f"use 1-{MAX_LIMIT}")
    if limit is not None and shared:
        raise UsageError("limit and shared exclude each other", param="limit",
                         hint="a semaphore has a number of slots; shared holds have none")
    return SEMAPHORE if limit is not None else SHARED if shared else EXCLUSIVE


_this: Holder | None = None  # this process's own holder record, made once (per pid: not a forked worker's)


def this_process(command: str | None = None) -> Holder:
    """Who this process is, for on-call: host, pid, user and (masked) command line — ``command``,
    else this process's own."""
    global _this
    if command is None and _this is not None and _this.pid == os.getpid():
        return _this
    if command is None:
        import shlex

        text = shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    else:
        text = command
    # The command line is stored for on-call and shown by status: no password of a URL or an argument.
    holder = Holder(host_name(), os.getpid(), user_name(), mask_command(text)[:MAX_COMMAND_CHARS])
    if command is None:
        _this = holder
    return holder
