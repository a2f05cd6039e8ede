"""The façade services and the CLI use: ``connect()`` and ``Service``, which delegates to the features
(``leases``, ``keeper``, ``exec``, ``intracom``, ``schema``). It holds no logic of its own beyond the
seed's P/V bookkeeping. A feature's module is imported when it is first used: a CLI run or a service
pays only for what it calls."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .errors import LockHeldError, NotOwnerError, UsageError
from .inputs import validate_mutex_id
from .leases import Leases
from .lifecycle import Lifecycle, on_signals
from .models import (
    CLI,
    DEFAULT_CHANNEL,
    SERVICE,
    AckReport,
    ForcedRelease,
    InitResult,
    Lease,
    LeaseEvent,
    Message,
    MutexState,
    NodeInfo,
    OnceMarker,
    Overview,
    RunResult,
    SchemaState,
)
from .requests import Duration, duration_ms, validate_value, wait_seconds
from .stores import open_store
from .waiting import WaitAbandoned, WaitCallback

if TYPE_CHECKING:
    from .election import Leader
    from .intracom import Intracom
    from .keeper import HeldLease
    from .schema.initialize import StepCallback
    from .stores.protocols import IfMissing, Store



def connect(config: str | None = None, *, store: str | None = None, node_id: str | None = None,
            release_on_signals: bool = False) -> Service:
    """Open the store the way the CLI would: flags here > ``MUTEXCTL_*`` > the YAML file > defaults.
    ``release_on_signals``: see ``Service.release_on_signals``."""
    service = Service(load_settings(config=config, store=store, node_id=node_id))
    if release_on_signals:
        service.release_on_signals()
    return service


class Service:
    """Mutexes and broadcasts on one store for one node. Thread-safe for one lease per thread.

    Its life (see lifecycle): ``close()`` releases every lease it holds, after telling its running
    ``lock()`` blocks to stop; ``release_on_signals()`` does that on SIGTERM/SIGINT. ``via``: what
    uses it, stamped on its leases for on-call — a program (``SERVICE``), or the command line
    (``CLI``), whose token-mode leases outlive the process on purpose: then close releases nothing.
    """

    def __init__(self, settings: Settings, store: Store | None = None, *, via: str = SERVICE,
                 if_missing: IfMissing = "create") -> None:
        self.settings = settings
        self.store: Store = store if store is not None else open_store(settings, if_missing=if_missing)
        self.leases = Leases(self.store, settings, via=via)
        keep_leases = via == CLI
        self._intracom: Intracom | None = None
        self._taken: dict[str, tuple[str, int]] = {}  # what P() took, so V() releases exactly that lease
        self._keep_leases = keep_leases
        self.lifecycle = Lifecycle(self.leases, on_close=self._close_store, at_exit=not keep_leases)

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    @property
    def intracom(self) -> Intracom:
        if self._intracom is None:
            from .intracom import Intracom

            self._intracom = Intracom(self.store, self.settings)
        return self._intracom

    # -- the seed's interface -------------------------------------------------------------------

    def P(self, mutex_id: str, node_id: str, timeout_ms: int) -> bool:  # noqa: N802 - the seed's names
        """Try once to take ``mutex_id`` for ``node_id`` for ``timeout_ms``; True if taken."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise UsageError(f"timeout_ms must be a positive integer, not {timeout_ms!r}")
        self.lifecycle.check_open()
        try:
            lease = self.leases.take(self.leases.request(mutex_id, timeout=timedelta(milliseconds=timeout_ms),
                                                         node_id=node_id), explain=False)
        except LockHeldError:
            return False
        self._taken[mutex_id] = (node_id, lease.fence)
        self._took(lease)
        return True

    def V(self, mutex_id: str) -> bool:  # noqa: N802 - the seed's names
        """Release what P() took; False if the lease was no longer ours (expired and taken over).

        Without an earlier P() on this object, it releases a lease held by this service's node id.
        """
        node_id, fence = self._taken.pop(mutex_id, (self.node_id, None))
        try:
            self.release(mutex_id, token=fence, node_id=node_id)
        except NotOwnerError:
            return False
        return True

    # -- leases (see leases.Leases) ---------------------------------------------------------------

    def try_acquire(self, mutex_id: str, *, timeout: Duration | None = None, node_id: str | None = None,
                    command: str | None = None, explain: bool = True, limit: int | None = None,
                    shared: bool = False) -> Lease:
        """One try; ``limit``: one of that many slots of a semaphore; ``shared``: a reader's hold."""
        request = self.leases.request(mutex_id, timeout=timeout, node_id=node_id, command=command, limit=limit,
                                      shared=shared)
        self.lifecycle.check_open()
        return self._took(self.leases.take(request, explain=explain))

    def acquire(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
                node_id: str | None = None, command: str | None = None,
                on_wait: WaitCallback | None = None, limit: int | None = None, shared: bool = False) -> Lease:
        request = self.leases.request(mutex_id, timeout=timeout, wait=wait, node_id=node_id, command=command,
                                      limit=limit, shared=shared)
        self.lifecycle.check_open()
        give_up = None if self._keep_leases else lambda: self.lifecycle.closing is not None
        try:
            return self._took(self.leases.acquire(request, on_wait=on_wait, give_up=give_up))
        except WaitAbandoned:
            self.lifecycle.check_open()  # (what ended the wait)
            raise

    def renew(self, lease: Lease) -> Lease:
        return self.lifecycle.renewed(self.leases.renew(lease))

    def renew_token(self, mutex_id: str, token: int, *, timeout: Duration | None = None) -> Lease:
        return self.lifecycle.renewed(self.leases.renew_token(mutex_id, token, timeout=timeout))

    def release(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None) -> None:
        try:
            self.leases.release(mutex_id, token=token, node_id=node_id)
        finally:
            self.lifecycle.released(mutex_id, token, node_id or self.node_id)

    def held(self) -> list[Lease]:
        """Every lease this Service holds now (what close() would release)."""
        return self.lifecycle.held()

    def _took(self, lease: Lease) -> Lease:
        return lease if self._keep_leases else self.lifecycle.took(lease)

    def force_release(self, mutex_id: str, *, reason: str, node: str | None = None,
                      fence: int | None = None) -> MutexState | None:
        """Break every holder, or (``node``, ``fence``) the semaphore's or shared lock's holder chosen."""
        return self.leases.force_release(mutex_id, reason=reason, node=node, fence=fence)

    def once_done(self, mutex_id: str, key: str) -> OnceMarker | None:
        return self.leases.once_done(mutex_id, key)

    def clear_once(self, mutex_id: str, key: str, *, reason: str) -> OnceMarker | None:
        return self.leases.clear_once(mutex_id, key, reason=reason)

    def run_once(self, mutex_id: str, key: str, work: Callable[[HeldLease], object], *,
                 timeout: Duration | None = None, wait: Duration | None = "inf") -> OnceMarker:
        """Run ``work`` once for (``mutex_id``, ``key``) among every instance that calls this: the
        first to get the mutex runs it, and when it returns (without raising, lease held) marks it
        done; the others wait, and return that marker without running it. If ``work`` raises, nothing
        is marked (the exception propagates) and the next instance runs it."""
        from .keeper import hold

        marker = self.leases.once_done(mutex_id, key)
        if marker is not None:
            return marker
        try:
            with hold(self.leases, self.leases.request(mutex_id, timeout=timeout, wait=wait),
                      give_up=lambda: self.leases.once_done(mutex_id, key) is not None or self._closing(),
                      registry=self.lifecycle) as held:
                marker = self.leases.once_done(mutex_id, key)
                if marker is None:
                    work(held)
                    if not held.lost:
                        marker = self.leases.mark_once(held.lease, key)
        except WaitAbandoned:
            marker = self.leases.once_done(mutex_id, key)
            if marker is None:
                self.lifecycle.check_open()  # (what ended the wait)
        assert marker is not None  # marked here or by another instance
        return marker

    def status(self, mutex_id: str | None = None) -> list[MutexState]:
        """Every mutex (or the one named, if it was ever taken), as the store sees it now."""
        return list(self.leases.overview(mutex_id, forced_limit=0).states)

    def overview(self, mutex_id: str | None = None, *, patterns: Sequence[str] = (), held_only: bool = False,
                 forced_limit: int = 5, recent: int = 0) -> Overview:
        """What on-call needs, in one read: the mutexes (all, the one named, or those matching glob
        ``patterns``), recent forced releases, the schema, the store's now; ``recent``: the newest
        events of their history too."""
        return self.leases.overview(mutex_id, patterns=patterns, held_only=held_only, forced_limit=forced_limit,
                                    recent=recent)

    def history(self, patterns: Sequence[str] = (), *, since: Duration | None = None, node: str | None = None,
                limit: int = 100) -> list[LeaseEvent]:
        """The lease history, newest first: of the mutexes named or matching globs in ``patterns``
        (none: every mutex), of the last ``since`` (on the store's clock), done by or taken from ``node``."""
        from . import history

        since_s = None if since is None else wait_seconds(since, "since")
        return history.read(self.store, patterns, since_s=None if since_s == float("inf") else since_s, node=node,
                            limit=limit)

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        return self.leases.forced_releases(mutex_id, limit)

    def lock(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
             limit: int | None = None, shared: bool = False,
             on_lost: Callable[[str], None] | None = None) -> AbstractContextManager[HeldLease]:
        """``with svc.lock(name) as held:`` hold the mutex (or one of ``limit`` slots, or a shared
        hold) for the block, renewed in the background (see keeper.hold). When the work must stop —
        the lease is about to be lost, or the Service shuts down — ``held.stop_event`` is set and
        ``on_lost(reason)`` is called once (from another thread), early enough to stop before the
        lease could pass to anyone else; ``held.lost`` turns true if it is lost."""
        from .keeper import hold

        request = self.leases.request(mutex_id, timeout=timeout, wait=wait, limit=limit, shared=shared)
        return hold(self.leases, request, on_lost=on_lost, registry=self.lifecycle,
                    give_up=lambda: self.lifecycle.closing is not None)

    # -- leader election (see election) ------------------------------------------------------

    def elect(self, name: str, *, value: str = "", timeout: Duration | None = None, wait: Duration | None = "inf",
              on_lost: Callable[[str], None] | None = None) -> AbstractContextManager[HeldLease]:
        """``with svc.elect(name, value=…) as held:`` lead for the block. Candidates wait in line for the
        election's lease (first come, first served); the winner announces ``value`` for its term
        (``held.fence``) and keeps the lease renewed; leaving the block resigns. Deposed (the lease
        lost, or a shutdown), ``held.stop_event`` is set and ``on_lost`` called as for ``lock``,
        early enough to stop before the next term can begin. ``wait``: how long to stand as a candidate."""
        import contextlib

        from .election import announce_flow
        from .flows import drive

        checked = validate_value(value)

        @contextlib.contextmanager
        def leading() -> Generator[HeldLease, None, None]:
            with self.lock(name, timeout=timeout, wait=wait, on_lost=on_lost) as held:
                drive(announce_flow(held.lease, checked), self.store)
                yield held

        return leading()

    def leader(self, name: str) -> Leader | None:
        """The leader of election ``name`` now (node, value, term, since), or None."""
        from .election import leader_flow
        from .flows import drive

        return drive(leader_flow(validate_mutex_id(name)), self.store)

    def observe(self, name: str, *, interval: Duration | None = None) -> Generator[Leader | None, None, None]:
        """The leader now, then at each change (None: nobody leads), in term order, read every
        ``interval`` (default: poll_interval). Runs until the loop that reads it ends."""
        from .election import observe_flow
        from .flows import drive_handing

        interval_s = self.settings.poll_interval_s if interval is None else duration_ms(interval, "interval") / 1000
        return drive_handing(observe_flow(validate_mutex_id(name), interval_s), self.store)

    def run_as_leader(self, name: str, argv: Sequence[str], *, value: str = "", timeout: Duration | None = None,
                      wait: Duration | None = "inf", on_wait: WaitCallback | None = None,
                      stdin: bool = True) -> RunResult:
        """Stand for election ``name`` and, elected, run ``argv`` as its leader with exec mode's
        guarantees (see exec.run_under_lease): ``value`` is announced for the term before it starts,
        and a deposed leader's command is stopped before the next term can begin (``lost``)."""
        from .election import announce_flow
        from .exec import run_under_lease
        from .flows import drive

        checked = validate_value(value)
        request = self.leases.request(name, timeout=timeout, wait=wait)
        return run_under_lease(self.leases, request, argv, on_wait=on_wait, stdin=stdin,
                               on_taken=lambda lease: drive(announce_flow(lease, checked), self.store))

    def run(self, mutex_id: str, argv: Sequence[str], *, timeout: Duration | None = None,
            wait: Duration | None = None, on_wait: WaitCallback | None = None, limit: int | None = None,
            shared: bool = False, once: str | None = None, stdin: bool = True) -> RunResult:
        """Run ``argv`` while holding the mutex (see exec.run_under_lease); ``stdin`` false: it reads /dev/null."""
        from .exec import run_under_lease

        request = self.leases.request(mutex_id, timeout=timeout, wait=wait, limit=limit, shared=shared)
        return run_under_lease(self.leases, request, argv, on_wait=on_wait, once=once, stdin=stdin)

    # -- schema -------------------------------------------------------------------------------

    def schema(self) -> SchemaState | None:
        """The store's schema record; None if it was never initialized (lock commands work anyway)."""
        return self.store.schema_state()

    def check_schema(self) -> SchemaState:
        """SchemaError unless the store is at this tool's version with nothing missing."""
        from .schema import check_version

        state = self.store.schema_state()
        check_version(state, self.store.schema_problems())
        assert state is not None  # check_version raised otherwise
        return state

    def init_schema(self, *, wait: Duration | None = None, timeout: Duration | None = None,
                    dry_run: bool = False, on_step: StepCallback | None = None) -> InitResult:
        """Bring the store to this tool's schema version (see schema.initialize)."""
        from .schema.initialize import initialize

        return initialize(self.store, self.leases, wait=wait, timeout=timeout, dry_run=dry_run, on_step=on_step)

    # -- intracom (see intracom.Intracom) -------------------------------------------------------------

    def broadcast(self, action: str, payload: object = "{}", *, channel: str = DEFAULT_CHANNEL,
                  to: Sequence[str] = (), require_listeners: bool = False) -> Message:
        return self.intracom.broadcast(action, payload, channel=channel, to=to, require_listeners=require_listeners)

    def nodes(self, channel: str | None = None) -> tuple[datetime, list[NodeInfo]]:
        return self.intracom.nodes(channel)

    def ack_report(self, message_id: str) -> AckReport:
        return self.intracom.ack_report(message_id)

    def wait_acks(self, message: Message, *, wait: Duration,
                  on_progress: Callable[[AckReport], None] | None = None) -> AckReport:
        return self.intracom.wait_acks(message, wait_s=wait_seconds(wait, "wait"), on_progress=on_progress)

    def listen(self, *, channel: str = DEFAULT_CHANNEL, handler: Callable[[Message], int] | None = None,
               include_self: bool = False, from_start: bool = False, once: bool = False,
               stop: threading.Event | None = None, **options: Any) -> int | Generator[Message, int | None, None]:
        return self.intracom.listen(channel=channel, handler=handler, include_self=include_self,
                                    from_start=from_start, once=once, stop=stop, **options)

    def release_on_signals(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """On any of ``signals``: take no new lease, tell every running ``lock()`` block to stop, and
        end the main thread with SystemExit(128+N) (143 for SIGTERM); the blocks it leaves release
        their leases, and ``close()`` (the ``with``, or interpreter exit) releases the rest. From the
        main thread only."""
        on_signals(self.lifecycle, signals)

    def close(self) -> None:
        """Release every lease this Service holds (see lifecycle), then close the store; idempotent."""
        self.lifecycle.close()

    def _closing(self) -> bool:
        return self.lifecycle.closing is not None

    def _close_store(self) -> None:
        self.leases.recorder.flush()  # the lease history this process queued (MongoDB)
        self.store.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

