"""Leases: take (once, or waiting with backoff), renew, release, break, and read them.

This feature owns the waiting loop: stores do one atomic operation per call. A waiter polls with
jittered exponential backoff (5 ms doubling to 1 s) and never sleeps past the holder's expiry.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .clock import lease_clock
from .config import Settings, host_name
from .errors import DuplicateMutexError, LockHeldError, StoreUnavailableError, UsageError, WaitTimeoutError
from .inputs import parse_timeout_ms, parse_wait_s, validate_mutex_id, validate_reason, validate_token
from .logs import logger
from .models import ForcedRelease, Holder, Lease, MutexState, Overview
from .redact import mask_url

if TYPE_CHECKING:
    from .stores.protocols import LeaseStore

log = logger(__name__)

BACKOFF_FIRST_S = 0.005
BACKOFF_CAP_S = 1.0
MAX_COMMAND_CHARS = 500  # of a holder's command line kept for on-call

# A duration: "30s"-style text, a number of seconds, or a timedelta.
Duration = str | float | int | timedelta
# Told, while a waiter waits, why (the holder, or the store's outage) and how long it has waited.
WaitCallback = Callable[[LockHeldError | StoreUnavailableError, float], None]


def duration_ms(value: Duration, what: str) -> int:
    """A lease timeout in whole milliseconds (at least 1): parsed once, wherever it came from."""
    if not isinstance(value, timedelta):
        return parse_timeout_ms(value, what=what)
    milliseconds = round(value / timedelta(milliseconds=1))
    if milliseconds < 1:
        raise UsageError(f"{what} {value} is shorter than 1ms")
    return milliseconds


def wait_seconds(value: Duration, what: str = "wait") -> float:
    if not isinstance(value, timedelta):
        return parse_wait_s(value, what=what)
    if value < timedelta(0):
        raise UsageError(f"{what} {value} is negative")
    return value.total_seconds()


def user_name() -> str:
    """Who runs this process, as getpass.getuser() says it (without importing getpass's terminal code)."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a container without a passwd entry for our uid
        return str(os.getuid())


_WAITS = ((5, "5s"), (10, "10s"), (30, "30s"), (60, "1m"), (120, "2m"), (300, "5m"), (600, "10m"), (900, "15m"),
          (1800, "30m"), (3600, "1h"), (7200, "2h"), (21600, "6h"), (86400, "1d"))


def suggested_wait(state: MutexState | None) -> str:
    """A --wait that outlasts the holder's lease (rounded up to a plain duration), if its end is known."""
    if state is None or state.remaining_ms is None:
        return "inf" if state is not None and state.taken else "30s"
    needed = state.remaining_ms / 1000 * 1.1 + 1  # the lease, a little more for the poll
    return next((text for seconds, text in _WAITS if seconds >= needed), "inf")


class Leases:
    """Leases of one node on one store."""

    def __init__(self, store: LeaseStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._default_holder: Holder | None = None

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def try_acquire(self, mutex_id: str, *, timeout: Duration | None = None, node_id: str | None = None,
                    command: str | None = None, explain: bool = True, exec_mode: bool = False) -> Lease:
        """Take the mutex now or raise LockHeldError. ``exec_mode``: this process supervises a command
        under the lease (a release without its token then refuses to end it).

        A store that answers "held" without the holder (MongoDB's refused upsert) costs one more read
        to name the holder in the error, unless ``explain`` is false.
        """
        validate_mutex_id(mutex_id)
        timeout_ms = self.settings.timeout_for(mutex_id) if timeout is None else duration_ms(timeout, "timeout")
        self.store.prepare_writes()
        sent = lease_clock()
        try:
            lease = self.store.try_acquire(mutex_id, node_id or self.node_id, timeout_ms,
                                           self.holder(command)._replace(exec_mode=exec_mode))
        except LockHeldError as held:
            if held.state is not None or not explain:
                raise
            raise LockHeldError(mutex_id, self.store.get(mutex_id)) from None
        return lease.with_deadline(sent + timeout_ms / 1000)

    def acquire(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
                node_id: str | None = None, command: str | None = None,
                on_wait: WaitCallback | None = None, exec_mode: bool = False) -> Lease:
        """Take the mutex, waiting up to ``wait`` (``inf`` for ever; default from settings, 0 = one try).

        While it is held, polls with jittered exponential backoff and never sleeps past the holder's
        expiry. While the store is unreachable (a restart, a replica-set election) it keeps trying
        within the same wait, telling ``on_wait``. Raises WaitTimeoutError (or, if the store was
        unreachable to the end, StoreUnavailableError) when the wait ends.
        """
        wait_s = self.settings.wait_for(mutex_id) if wait is None else wait_seconds(wait)
        started = time.monotonic()
        deadline, delay, holder_ends = started + wait_s, BACKOFF_FIRST_S, 0.0
        seen: LockHeldError | None = None  # the holder as last described, for progress and the error
        while True:
            try:
                # Polls after the first skip the extra read that names the holder: one round trip each.
                return self.try_acquire(mutex_id, timeout=timeout, node_id=node_id, command=command,
                                        explain=seen is None, exec_mode=exec_mode)
            except LockHeldError as held:
                now = time.monotonic()
                if seen is None or held.state is not None:
                    seen = held
                    if held.state is not None and held.state.remaining_ms is not None:
                        holder_ends = now + held.state.remaining_ms / 1000
                if now >= deadline:
                    raise self._timed_out(mutex_id, held, wait_s) from None
                if on_wait is not None:
                    on_wait(seen, now - started)
            except StoreUnavailableError as outage:
                now = time.monotonic()
                if now >= deadline:
                    raise
                log.info("store unreachable while waiting for %s, retrying: %s", mutex_id, outage.message)
                if on_wait is not None:
                    on_wait(outage, now - started)
            import random  # only a waiter needs it

            pause = delay * random.uniform(0.5, 1.0)
            if holder_ends > now:
                pause = min(pause, holder_ends - now + 0.001)
            time.sleep(min(pause, deadline - now))
            delay = min(BACKOFF_CAP_S, delay * 2)

    def renew(self, lease: Lease) -> Lease:
        """Extend our lease by its timeout; raises LeaseExpiredError/NotOwnerError if it is gone."""
        sent = lease_clock()
        return self.store.renew(lease).with_deadline(sent + lease.timeout_ms / 1000)

    def renew_token(self, mutex_id: str, token: int, *, timeout: Duration | None = None,
                    node_id: str | None = None) -> Lease:
        """Renew a token-mode lease by its fence (``mutexctl renew``, etcd's keep-alive): for another
        ``timeout`` from now, or for its own timeout. LeaseExpiredError/NotOwnerError if it is gone."""
        validate_mutex_id(mutex_id)
        validate_token(token)
        if timeout is not None:
            timeout_ms = duration_ms(timeout, "--timeout")
        else:  # keep the lease's own length
            state = self.store.get(mutex_id)
            timeout_ms = state.timeout_ms if state is not None and state.timeout_ms else \
                self.settings.timeout_for(mutex_id)
        self.store.prepare_writes()
        now = datetime.now(UTC)
        return self.renew(Lease(mutex_id, node_id or self.node_id, token, timeout_ms, now, now))

    def release(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None) -> None:
        """Free the mutex if this node (and ``token``, the fence, when given) holds it; else NotOwnerError."""
        if token is not None:
            validate_token(token)
        self.store.prepare_writes()
        self.store.release(validate_mutex_id(mutex_id), node_id or self.node_id, token)
        log.debug("released %s (fence %s)", mutex_id, token)

    def force_release(self, mutex_id: str, *, reason: str) -> MutexState | None:
        """Break whatever lease holds the mutex, on the record. Returns the state it had (None: was free)."""
        text = validate_reason(reason)
        self.store.prepare_writes()
        before = self.store.force_release(validate_mutex_id(mutex_id), self.node_id, self.holder(None), mask_url(text))
        log.info("force-released %s (was %s): %s", mutex_id, before.taken_by if before else "free", text)
        return before

    def overview(self, mutex_id: str | None = None, *, patterns: Sequence[str] = (), held_only: bool = False,
                 forced_limit: int = 5) -> Overview:
        """Every mutex (or the one named, or those whose names match any of the glob ``patterns``),
        in one read; ``held_only`` keeps the held ones."""
        if mutex_id is None and len(patterns) == 1 and not any(ch in patterns[0] for ch in "*?["):
            mutex_id, patterns = patterns[0], ()  # one plain name: read just that one
        view = self.store.overview(None if mutex_id is None else validate_mutex_id(mutex_id), forced_limit)
        if patterns:
            chosen = {s.mutex_id for s in view.states if any(fnmatch.fnmatchcase(s.mutex_id, p) for p in patterns)}
            view = view._replace(states=tuple(s for s in view.states if s.mutex_id in chosen),
                                 forced=tuple(f for f in view.forced if f.mutex_id in chosen))
        if held_only:
            view = view._replace(states=tuple(s for s in view.states if s.state == "held"))
        return view

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        return self.store.forced_releases(mutex_id, limit)

    def holder(self, command: str | None) -> Holder:
        """Who this process is, for on-call: host, pid, user and (masked) command line — ``command``,
        else this process's own."""
        cached = self._default_holder
        if command is None and cached is not None and cached.pid == os.getpid():  # not a forked worker
            return cached
        if command is None:
            import shlex

            text = shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
        else:
            text = command
        # The command line is stored for on-call and shown by status: a --store URL in it keeps no password.
        holder = Holder(host_name(), os.getpid(), user_name(), mask_url(text)[:MAX_COMMAND_CHARS])
        if command is None:
            self._default_holder = holder
        return holder

    def _timed_out(self, mutex_id: str, held: LockHeldError, wait_s: float) -> LockHeldError:
        if isinstance(held, DuplicateMutexError):
            return held  # its message says what to fix; waiting longer does not help
        state = held.state if held.state is not None else self.store.get(mutex_id)
        if wait_s <= 0:
            return LockHeldError(mutex_id, state, hint=f"wait for it with --wait {suggested_wait(state)}, or see "
                                                       "'mutexctl status'")
        error = WaitTimeoutError(mutex_id, state, hint="wait longer, or see 'mutexctl status' for the holder")
        error.message = error.args[0] + f" (gave up after {wait_s:g}s)"
        error.args = (error.message,)
        return error
