"""The core: waiting with backoff, renewal, the lease keeper, the seed's P/V, and running a command.

This is the only module that sleeps or loops on time. Stores do one atomic operation per call.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import Settings, load_settings, parse_timeout_ms, parse_wait_s, validate_node_id
from .errors import (DuplicateMutexError, LeaseLostError, LockHeldError, NotOwnerError, SchemaError, StoreError, UsageError,
                     WaitTimeoutError)
from .intracom import (DEFAULT_CHANNEL, AckReport, Cursor, is_for, message_id, parse_payload, validate_action,
                       validate_channel)
from .models import Ack, ForcedRelease, Holder, Lease, Message, MutexState, Overview, utcnow, validate_mutex_id
from .schema import InitResult, SchemaState, check_version, initialize, refuse_newer
from .stores import Store, mask_url, open_store

BACKOFF_FIRST_S = 0.005
BACKOFF_CAP_S = 1.0
# Fraction of the timeout kept in reserve against the local clock running slower than the store's.
CLOCK_SAFETY = 0.1
MAX_STOP_GRACE_S = 5.0
# Renewals also detect a forced release; a cap keeps that detection prompt for long leases.
MAX_RENEW_INTERVAL_S = 5.0
# The keeper reads the lease clock at least this often: after a system suspend that outlasted the
# lease, the command is stopped within this long of the resume.
KEEPER_TICK_S = 0.25
_LEASE_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)


def lease_clock() -> float:
    """Seconds on the clock that local lease deadlines are kept on: CLOCK_BOOTTIME where there is one.

    Unlike the monotonic clock it runs on while the machine is suspended, as the store's clock does
    (a server's, or CLOCK_BOOTTIME for SQLite): a lease that ran out during a suspend is seen as gone.
    """
    return time.clock_gettime(_LEASE_CLOCK) if _LEASE_CLOCK is not None else time.monotonic()

# Broadcast: listeners re-register (heartbeat) this often; a sender counts a node live this long after.
HEARTBEAT_S = 10.0
LIVE_WINDOW_S = 30.0
GAP_GRACE_S = 60.0
LOG_BATCH = 100
INTRACOM_SCHEMA = 3

WaitCallback = Callable[[LockHeldError, float], None]


def connect(config: str | None = None, *, store: str | None = None, node_id: str | None = None) -> Service:
    """Open the store the way the CLI would: flags here > ``MUTEXCTL_*`` > the YAML file > defaults."""
    return Service(load_settings(config=config, store=store, node_id=node_id))


def stop_grace_s(timeout_ms: int) -> float:
    """How long a stopped command gets between SIGTERM and SIGKILL: a sixth of the lease, at most 5 s."""
    return min(MAX_STOP_GRACE_S, timeout_ms / 6000)


def renew_interval_s(timeout_ms: int) -> float:
    """Renew every timeout/3, and at least every 5 s so a forced release is noticed within seconds."""
    return min(MAX_RENEW_INTERVAL_S, timeout_ms / 3000)


def _duration_ms(value: str | float | int | None, default_ms: int, what: str) -> int:
    return default_ms if value is None else parse_timeout_ms(value, what=what)


@dataclass(frozen=True)
class RunResult:
    """How ``Service.run`` ended: the command's status, and why the lease was lost, if it was."""

    status: int
    fence: int
    lost: str | None = None
    stopped: bool = False  # the loss was noticed while the command ran, and it was stopped
    release_error: StoreError | None = None


class Service:
    """Mutexes on one store for one node. Thread-safe for one lease per thread."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        self._default_holder: Holder | None = None
        self._writable = False  # the store's schema was checked not to be newer than this tool
        self._intracom_ready = False  # ...and to have the broadcast tables (checked once, like the above)
        self._taken: dict[str, tuple[str, int]] = {}  # what P() took, so V() releases exactly that lease

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    # -- the seed's interface -------------------------------------------------------------------

    def P(self, mutex_id: str, node_id: str, timeout_ms: int) -> bool:  # noqa: N802 - the seed's names
        """Try once to take ``mutex_id`` for ``node_id`` for ``timeout_ms``; True if taken."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise UsageError(f"timeout_ms must be a positive integer, not {timeout_ms!r}")
        self._check_writable()
        try:
            lease = self.store.try_acquire(validate_mutex_id(mutex_id), node_id, timeout_ms, self._holder(None))
        except LockHeldError:
            return False
        self._taken[mutex_id] = (node_id, lease.fence)
        return True

    def V(self, mutex_id: str) -> bool:  # noqa: N802 - the seed's names
        """Release what P() took; False if the lease was no longer ours (expired and taken over).

        Without an earlier P() on this object, it releases a lease held by this service's node id.
        """
        node_id, fence = self._taken.pop(mutex_id, (self.node_id, None))
        self._check_writable()
        try:
            self.store.release(validate_mutex_id(mutex_id), node_id, fence)
        except NotOwnerError:
            return False
        return True

    # -- leases -------------------------------------------------------------------------------

    def try_acquire(self, mutex_id: str, *, timeout: str | float | None = None, node_id: str | None = None,
                    command: str | None = None, explain: bool = True) -> Lease:
        """Take the mutex now or raise LockHeldError. ``timeout`` is a duration (``30s``; number = seconds).

        A store that answers "held" without the holder (MongoDB's refused upsert) costs one more read
        to name the holder in the error, unless ``explain`` is false.
        """
        validate_mutex_id(mutex_id)
        timeout_ms = _duration_ms(timeout, self.settings.timeout_for(mutex_id), "timeout")
        self._check_writable()
        sent = lease_clock()
        try:
            lease = self.store.try_acquire(mutex_id, node_id or self.node_id, timeout_ms, self._holder(command))
        except LockHeldError as held:
            if held.state is not None or not explain:
                raise
            raise LockHeldError(mutex_id, self.store.get(mutex_id)) from None
        return lease.with_deadline(sent + timeout_ms / 1000)

    def acquire(self, mutex_id: str, *, timeout: str | float | None = None, wait: str | float | None = None,
                node_id: str | None = None, command: str | None = None,
                on_wait: WaitCallback | None = None) -> Lease:
        """Take the mutex, waiting up to ``wait`` (``inf`` for ever; default from settings, 0 = one try).

        While it is held, polls with jittered exponential backoff (5 ms doubling to 1 s) and never
        sleeps past the holder's expiry. Raises WaitTimeoutError when the wait ends.
        """
        wait_s = self.settings.wait_for(mutex_id) if wait is None else parse_wait_s(wait)
        started = time.monotonic()
        deadline, delay, holder_ends = started + wait_s, BACKOFF_FIRST_S, 0.0
        seen: LockHeldError | None = None  # the holder as last described, for progress and the error
        while True:
            try:
                # Polls after the first skip the extra read that names the holder: one round trip each.
                return self.try_acquire(mutex_id, timeout=timeout, node_id=node_id, command=command,
                                        explain=seen is None)
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
                pause = delay * random.uniform(0.5, 1.0)
                if holder_ends > now:
                    pause = min(pause, holder_ends - now + 0.001)
                time.sleep(min(pause, deadline - now))
                delay = min(BACKOFF_CAP_S, delay * 2)

    def renew(self, lease: Lease) -> Lease:
        """Extend our lease by its timeout; raises LeaseExpiredError/NotOwnerError if it is gone."""
        sent = lease_clock()
        return self.store.renew(lease).with_deadline(sent + lease.timeout_ms / 1000)

    def release(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None) -> None:
        """Free the mutex if this node (and ``token``, the fence, when given) holds it; else NotOwnerError."""
        self._check_writable()
        self.store.release(validate_mutex_id(mutex_id), node_id or self.node_id, token)

    def force_release(self, mutex_id: str, *, reason: str) -> MutexState | None:
        """Break whatever lease holds the mutex, on the record. Returns the state it had (None: was free)."""
        if not reason or not reason.strip():
            raise UsageError("a forced release needs a reason", hint='add --reason "why it is stuck"')
        self._check_writable()
        return self.store.force_release(validate_mutex_id(mutex_id), self.node_id, self._holder(None),
                                        reason.strip())

    def status(self, mutex_id: str | None = None) -> list[MutexState]:
        """Every mutex (or the one named, if it was ever taken), as the store sees it now."""
        return list(self.overview(mutex_id, forced_limit=0).states)

    def overview(self, mutex_id: str | None = None, *, forced_limit: int = 5) -> Overview:
        """What on-call needs, in one read: the mutexes, recent forced releases, the schema, the store's now."""
        return self.store.overview(None if mutex_id is None else validate_mutex_id(mutex_id), forced_limit)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        return self.store.forced_releases(mutex_id, limit)

    @contextlib.contextmanager
    def lock(self, mutex_id: str, *, timeout: str | float | None = None,
             wait: str | float | None = None) -> Iterator[HeldLease]:
        """Hold the mutex for the block, renewing it every timeout/3 in a background thread.

        If renewal is refused or the store stays unreachable until the lease could expire,
        ``held.lost`` turns true; leaving the block then raises LeaseLostError.
        """
        lease = self.acquire(mutex_id, timeout=timeout, wait=wait)
        held = HeldLease(lease)
        keeper = LeaseKeeper(self, lease, on_lost=held._mark_lost, stop_margin_s=0.0)
        held._keeper = keeper
        keeper.start()
        try:
            yield held
        finally:
            keeper.stop()
            if not held.lost:
                with contextlib.suppress(NotOwnerError):
                    self.release(mutex_id, token=keeper.lease.fence)
        if held.lost:
            raise LeaseLostError(f"lease on '{mutex_id}' was lost while the block ran: {held.lost_reason}")

    def run(self, mutex_id: str, argv: Sequence[str], *, timeout: str | float | None = None,
            wait: str | float | None = None, on_wait: WaitCallback | None = None) -> RunResult:
        """Run ``argv`` while holding the mutex; stop its process group before the lease could pass on."""
        from .runner import CommandGroup  # exec mode only

        lease = self.acquire(mutex_id, timeout=timeout, wait=wait, command=shlex.join(argv), on_wait=on_wait)
        env = dict(os.environ, MUTEXCTL_MUTEX_ID=mutex_id, MUTEXCTL_NODE_ID=lease.node_id,
                   MUTEXCTL_FENCE=str(lease.fence), MUTEXCTL_LOCK_HELD="1")
        group = CommandGroup(argv, env)
        grace = stop_grace_s(lease.timeout_ms)
        keeper = LeaseKeeper(self, lease, on_lost=lambda _reason: group.stop(grace), stop_margin_s=grace)
        with group.forwarding_signals():
            try:
                group.start()
            except BaseException:
                with contextlib.suppress(StoreError, NotOwnerError):
                    self.release(mutex_id, token=lease.fence)
                raise
            keeper.start()
            status = group.wait(may_resume=keeper.holds)
        keeper.stop()
        group.finish(kill_rest=keeper.lost_reason is not None)
        if keeper.lost_reason is not None:
            return RunResult(status, lease.fence, lost=keeper.lost_reason, stopped=True)
        try:
            self.release(mutex_id, token=lease.fence)
        except NotOwnerError as exc:  # broken or expired before the command ended: it ran unprotected
            return RunResult(status, lease.fence, lost=f"{exc.message} when the command ended")
        except StoreError as exc:  # the lease is intact and will expire on its own
            return RunResult(status, lease.fence, release_error=exc)
        return RunResult(status, lease.fence)

    # -- schema -------------------------------------------------------------------------------

    def schema(self) -> SchemaState | None:
        """The store's schema record; None if it was never initialized (lock commands work anyway)."""
        return self.store.schema_state()

    def check_schema(self) -> SchemaState:
        """``init-schema --check``: SchemaError unless the store is at this tool's version with nothing
        missing (e.g. a dropped index); returns the schema record."""
        state = self.store.schema_state()
        check_version(state)
        missing = self.store.schema_problems()
        if missing:
            raise SchemaError(f"the store's schema is at version {state.version if state else 0}, but "
                              + "; ".join(text for _, text in missing), hint="run mutexctl init-schema to repair it")
        assert state is not None  # check_version raised otherwise
        return state

    def init_schema(self, *, wait: str | float | None = None, timeout: str | float | None = None,
                    dry_run: bool = False, on_step: Callable[[int, str], None] | None = None) -> InitResult:
        """Bring the store to this tool's schema version, under the mutex ``mutexctl.schema``.

        Many runners at once are safe; ``dry_run`` reports what would change. See ``schema.initialize``.
        """
        return initialize(self, wait=wait, timeout=timeout, dry_run=dry_run, on_step=on_step)

    # -- intracom -------------------------------------------------------------------------------

    def broadcast(self, action: str, payload: str = "{}", *, channel: str = DEFAULT_CHANNEL,
                  to: Sequence[str] = ()) -> Message:
        """Append a message to the channel's log for every other listening node (or just ``to``).

        The nodes expected to answer are fixed now: ``to``, else the channel's live listeners minus
        this node. ``payload`` is JSON text of at most 1 MiB.
        """
        validate_action(action)
        validate_channel(channel)
        recipients = tuple(validate_node_id(node, what="--to node") for node in to)
        text = parse_payload(payload)
        self._check_intracom()
        # The registry is read before the number is taken: see intracom.Cursor.start.
        expected = recipients or tuple(n for n in self.store.live_nodes(channel, LIVE_WINDOW_S) if n != self.node_id)
        seq = self.store.next_seq(channel)
        message = Message(message_id(channel, seq), channel, seq, action, text, self.node_id, recipients, expected,
                          utcnow())
        self.store.append_message(message)
        return message

    def ack_report(self, message_id: str) -> AckReport:
        """Who acked ``message_id``, who failed and who is silent so far."""
        self._check_intracom()
        message = self.store.get_message(message_id)
        if message is None:
            raise UsageError(f"no message {message_id!r} in the log",
                             hint="use the id broadcast printed, e.g. default:12")
        return AckReport(message, tuple(self.store.acks(message.id)))

    def wait_acks(self, message: Message, *, wait: str | float, on_progress: Callable[[AckReport], None] | None = None
                  ) -> AckReport:
        """Poll the acks until every expected node answered or ``wait`` ends; returns the last report."""
        deadline = time.monotonic() + parse_wait_s(wait, what="--wait")
        delay = 0.02
        while True:
            report = AckReport(message, tuple(self.store.acks(message.id)))
            now = time.monotonic()
            if report.complete or now >= deadline:
                return report
            if on_progress is not None:
                on_progress(report)
            time.sleep(min(delay, deadline - now))
            delay = min(self.settings.poll_interval_s / 2, delay * 2)

    def listen(self, *, channel: str = DEFAULT_CHANNEL, handler: Callable[[Message], int] | None = None,
               include_self: bool = False, from_start: bool = False, once: bool = False,
               stop: threading.Event | None = None, gap_grace_s: float = GAP_GRACE_S) -> Any:
        """Receive the channel's messages: each one meant for this node is handled, then acked.

        With ``handler`` (message -> exit status; an exception counts as 1) it runs until ``stop``
        is set (or, with ``once``, until the log is drained) and returns how many it handled.
        Without, it returns an iterator of messages; each is acked with status 0 when the next is
        asked for. A message acked by this node is never handled again, also across restarts.
        """
        deliveries = self._deliveries(validate_channel(channel), include_self, from_start, once,
                                      stop or threading.Event(), gap_grace_s)
        if handler is None:
            return deliveries
        handled = 0
        try:
            message = next(deliveries)
            while True:
                try:
                    status = handler(message)
                except Exception:  # noqa: BLE001 - the failure is reported to the sender in the ack
                    status = 1
                handled += 1
                message = deliveries.send(status)
        except StopIteration:
            return handled

    def _deliveries(self, channel: str, include_self: bool, from_start: bool, once: bool, stop: threading.Event,
                    gap_grace_s: float) -> Generator[Message, int | None, None]:
        self._check_intracom()
        node, host, pid = self.node_id, socket.gethostname(), os.getpid()
        saved = self.store.register_node(node, channel, host, pid)
        cursor = Cursor.start(saved, self.store.latest_seq(channel), from_start=from_start, gap_grace_s=gap_grace_s)
        beat = time.monotonic()
        while True:
            batch = self.store.messages_after(channel, cursor.position, limit=LOG_BATCH)
            mine = [m for m in batch if cursor.wanted(m, node) and is_for(m, node, include_self=include_self)]
            answered = self.store.acked(node, [m.id for m in mine])
            stopped = False
            for message in mine:
                if message.id not in answered:
                    if stop.is_set():
                        stopped = True  # the position stays before this message: the next run handles it
                        break
                    started = time.monotonic()
                    status = yield message
                    self.store.record_ack(Ack(message.id, node, utcnow(), status or 0,
                                              round((time.monotonic() - started) * 1000)))
                cursor.mark(message.seq)
            if not stopped:  # the rest of the batch was not for this node
                for other in batch:
                    cursor.mark(other.seq)
            if cursor.advance(time.monotonic()):
                self.store.save_cursor(node, channel, cursor.position)
            if once or stop.is_set():
                return
            if time.monotonic() - beat >= HEARTBEAT_S:
                self.store.register_node(node, channel, host, pid)
                beat = time.monotonic()
            if len(batch) < LOG_BATCH:  # caught up: idle until the next poll
                stop.wait(self.settings.poll_interval_s)

    def _check_intracom(self) -> None:
        if self._intracom_ready:
            return
        state = self.store.schema_state()
        refuse_newer(state.version if state else None)
        if state is None or state.version < INTRACOM_SCHEMA:
            raise SchemaError("broadcast needs the store's schema (version 3 or newer); it is "
                              + ("not initialized" if state is None else f"at version {state.version}"),
                              hint="run mutexctl init-schema")
        self._intracom_ready = True

    def _check_writable(self) -> None:
        """Refuse to write to a store whose schema is newer than this tool, and let the store prepare
        for writes (MongoDB: the unique index on mutexId). Once per Service."""
        if not self._writable:
            state = self.store.schema_state()
            refuse_newer(state.version if state else None)
            self.store.prepare_writes(state.version if state else 0)
            self._writable = True

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _holder(self, command: str | None) -> Holder:
        cached = self._default_holder
        if command is None and cached is not None and cached.pid == os.getpid():  # not a forked worker
            return cached
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a container without a passwd entry for our uid
            user = str(os.getuid())
        text = command if command is not None else shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
        # The command line is stored for on-call and shown by status: a --store URL in it keeps no password.
        holder = Holder(socket.gethostname(), os.getpid(), user, mask_url(text)[:500])
        if command is None:
            self._default_holder = holder
        return holder

    def _timed_out(self, mutex_id: str, held: LockHeldError, wait_s: float) -> LockHeldError:
        if isinstance(held, DuplicateMutexError):
            return held  # its message says what to fix; waiting longer does not help
        state = held.state if held.state is not None else self.store.get(mutex_id)
        if wait_s <= 0:
            return LockHeldError(mutex_id, state, hint="wait for it with --wait 30s, or see 'mutexctl status'")
        error = WaitTimeoutError(mutex_id, state, hint="wait longer, or see 'mutexctl status' for the holder")
        error.message = error.args[0] + f" (gave up after {wait_s:g}s)"
        error.args = (error.message,)
        return error


class HeldLease:
    """What ``with svc.lock(...) as held`` yields: the current lease, its fence, and loss."""

    def __init__(self, lease: Lease) -> None:
        self._first = lease
        self._keeper: LeaseKeeper | None = None
        self._lost = threading.Event()
        self.lost_reason: str | None = None

    @property
    def lease(self) -> Lease:
        return self._keeper.lease if self._keeper is not None else self._first

    @property
    def fence(self) -> int:
        return self._first.fence

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def wait_lost(self, timeout: float | None = None) -> bool:
        return self._lost.wait(timeout)

    def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self._lost.set()


class LeaseKeeper(threading.Thread):
    """Renews a lease every timeout/3 (at most 5 s apart) and calls ``on_lost(reason)`` once if it cannot.

    Renewals run in short-lived worker threads so that a renewal stuck on an unreachable store
    cannot delay the loss decision: the lease is declared lost at its conservative local deadline,
    less a clock-drift reserve and ``stop_margin_s`` (the time the caller needs to stop its work).
    The deadline is on ``lease_clock()``, checked every KEEPER_TICK_S, so a machine suspend that
    outlasted the lease is caught right after the resume.
    """

    def __init__(self, service: Service, lease: Lease, *, on_lost: Callable[[str], None],
                 stop_margin_s: float) -> None:
        super().__init__(name=f"mutexctl-keeper-{lease.mutex_id}", daemon=True)
        self.service = service
        self.lease = lease
        self.lost_reason: str | None = None
        self._on_lost = on_lost
        self._margin = stop_margin_s + CLOCK_SAFETY * lease.timeout_ms / 1000
        self._interval = renew_interval_s(lease.timeout_ms)
        self._wake = threading.Event()
        self._stopping = False
        self._result: Lease | BaseException | None = None
        self._last_error: BaseException | None = None
        self._losing = threading.Lock()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()

    def run(self) -> None:
        next_renewal = lease_clock() + self._interval
        in_flight = False
        while not self._stopping:
            now, lose_at = lease_clock(), self._lose_at()
            if now >= lose_at:
                cause = (f"store unreachable: {self._last_error}" if self._last_error
                         else "no answer from the store, or this machine was suspended")
                self._lose(f"could not renew the lease in time ({cause})")
                return
            if not in_flight and now >= next_renewal:
                in_flight = True
                threading.Thread(target=self._renew_once, args=(self.lease,), daemon=True).start()
            until = lose_at if in_flight else min(lose_at, next_renewal)
            # Event.wait runs on the monotonic clock, which stands still in a suspend: wake often.
            self._wake.wait(max(0.0, min(KEEPER_TICK_S, until - now)))
            self._wake.clear()
            result, self._result = self._result, None
            if result is None:
                continue
            in_flight = False
            if isinstance(result, Lease):
                self.lease, self._last_error = result, None
                next_renewal = lease_clock() + self._interval
            elif isinstance(result, NotOwnerError):
                self._lose(f"renewal refused: {result}")
                return
            else:
                self._last_error = result
                next_renewal = lease_clock() + min(self._interval, 0.25)

    def holds(self) -> bool:
        """Whether the lease is still surely ours; called after the process was suspended (Ctrl-Z).

        While mutexctl is stopped nothing renews, so the lease may have run out: then it is declared
        lost here, before the command may run again.
        """
        if self.lost_reason is None and lease_clock() >= self._lose_at():
            self._lose("the command was suspended until its lease could have expired; it was killed, not resumed")
        return self.lost_reason is None

    def _lose_at(self) -> float:
        """The lease-clock instant from which the lease counts as lost: its deadline less the margin."""
        return self.lease.local_deadline - self._margin

    def _renew_once(self, lease: Lease) -> None:
        try:
            self._result = self.service.renew(lease)
        except (NotOwnerError, StoreError) as exc:
            self._result = exc
        except Exception as exc:  # noqa: BLE001 - an unexpected failure counts as "could not renew"
            self._result = StoreError(f"renewal failed: {exc!r}")
        self._wake.set()

    def _lose(self, reason: str) -> None:
        with self._losing:  # once, whichever thread notices first
            if self._stopping or self.lost_reason is not None:
                return
            self.lost_reason = reason
        self._on_lost(reason)
