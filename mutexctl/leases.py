"""Leases: take (once, or waiting with backoff), renew, release, break, and read them.

This feature owns the waiting loop: stores do one atomic operation per call. A waiter polls with
jittered exponential backoff (5 ms doubling to 1 s) and never sleeps past the holder's expiry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .clock import lease_clock
from .config import Settings, is_glob
from .errors import (
    HeldOnHostError,
    LeaseExpiredError,
    LockHeldError,
    NotOwnerError,
    StoreError,
    StoreUnavailableError,
)
from .flows import Flow, call, drive, nap
from .identity import host_name
from .inputs import (
    MAX_REASON_CHARS,
    validate_mutex_id,
    validate_node_id,
    validate_once_key,
    validate_reason,
    validate_token,
)
from .logs import logger
from .models import (
    EXCLUSIVE,
    SEMAPHORE,
    SHARED,
    ForcedRelease,
    Holder,
    Lease,
    LeaseEvent,
    LeaseRequest,
    MutexState,
    OnceMarker,
    Overview,
    WakeList,
)
from .recorder import Recorder
from .redact import mask_url
from .requests import Duration, duration_ms, resolve, this_process
from .stores.common import conflict_error
from .waiting import WaitCallback, Waiting
from .waitline import Queue, ring_first_here

if TYPE_CHECKING:
    from .stores.protocols import LeaseStore

log = logger(__name__)

def conflicts(state: MutexState, kind: str, limit: int | None) -> bool:
    """Whether ``state``'s holders took the name in a way that excludes asking for it as ``kind``:
    a semaphore of another limit, or a semaphore against shared holds (either way). An exclusive
    lease conflicts with none: it waits for every slot or shared hold to end, and they wait for it
    (with shared holds, a read/write lock; another service's exclusive lease is one too)."""
    if kind == EXCLUSIVE:
        return False
    if state.kind == SEMAPHORE and state.slots:
        return kind != SEMAPHORE or state.limit != limit
    return state.kind == SHARED and bool(state.slots) and kind == SEMAPHORE


class Leases:
    """Leases of one node on one store."""

    def __init__(self, store: LeaseStore, settings: Settings, *, via: str | None = None) -> None:
        """``via``: what takes the leases, stamped on them for on-call (models.Holder.via)."""
        self.store = store
        self.settings = settings
        self.via = via
        self._default_holder: Holder | None = None
        self.recorder = Recorder(store)  # writes the history events a store queued (MongoDB)

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def request(self, mutex_id: str, *, timeout: Duration | None = None, wait: Duration | None = None,
                node_id: str | None = None, command: str | None = None, exec_mode: bool = False,
                limit: int | None = None, shared: bool = False) -> LeaseRequest:
        """The lease asked for, resolved once (see requests.resolve) on this node's settings."""
        return resolve(self.settings, mutex_id, timeout=timeout, wait=wait, node_id=node_id, command=command,
                       exec_mode=exec_mode, limit=limit, shared=shared, via=self.via)

    def take(self, request: LeaseRequest, *, waited_ms: int = 0, explain: bool = True) -> Lease:
        """Take the mutex now or raise LockHeldError (see ``take_flow``)."""
        return drive(self.take_flow(request, waited_ms=waited_ms, explain=explain), self.store)

    def take_flow(self, request: LeaseRequest, *, waited_ms: int = 0, explain: bool = True) -> Flow[Lease]:
        """Take the mutex now or raise LockHeldError. Holders of one name must ask for it the same
        way (kind and limit): else LimitConflictError. A store that answers "held" without the holder
        (MongoDB's refused upsert) costs one more read to name the holder, unless ``explain`` is false."""
        yield from call("prepare_writes")
        sent = lease_clock()
        try:
            method = "try_acquire" if request.kind == EXCLUSIVE else "try_acquire_slot"
            lease: Lease = yield from call(method, request, waited_ms=waited_ms)
        except HeldOnHostError:
            raise  # (its message names the holder the store cannot see)
        except LockHeldError as held:
            state = held.state if held.state is not None or not explain else (yield from call("get", request.mutex_id))
            if state is not None and conflicts(state, request.kind, request.limit):
                raise conflict_error(request.mutex_id, request.kind, request.limit, state) from None
            if type(held) is not LockHeldError:
                raise  # (its message says what it is)
            raise LockHeldError(request.mutex_id, state, asked=request.kind) from None
        self.recorder.poke()
        return lease.with_deadline(sent + request.timeout_ms / 1000)

    def acquire(self, request: LeaseRequest, *, on_wait: WaitCallback | None = None,
                give_up: Callable[[], bool] | None = None) -> Lease:
        """Take the mutex, waiting up to ``request.wait_s`` (see ``acquire_flow``)."""
        return drive(self.acquire_flow(request, on_wait=on_wait, give_up=give_up), self.store)

    def acquire_flow(self, request: LeaseRequest, *, on_wait: WaitCallback | None = None,
                     give_up: Callable[[], bool] | None = None) -> Flow[Lease]:
        """Take the mutex, waiting up to ``request.wait_s`` (inf: for ever; 0: one try).

        An exclusive waiter joins the mutex's queue and is served first come, first served (see
        ``_wait_in_line``); a semaphore's or shared lock's waiter polls with jittered exponential
        backoff, never past the first holder's expiry. While the store is unreachable (a restart, a
        replica-set election) it keeps trying within the same wait, telling ``on_wait``. Raises
        WaitTimeoutError (or, if the store was unreachable to the end, StoreUnavailableError) when
        the wait ends. ``give_up`` is asked after each refused try: true ends the wait with
        WaitAbandoned.
        """
        waiting = Waiting(request, on_wait, give_up)
        if request.kind == EXCLUSIVE and request.wait_s > 0:
            return (yield from self._wait_in_line(request, waiting))
        return (yield from self._wait_with_backoff(request, waiting))

    def _wait_in_line(self, request: LeaseRequest, waiting: Waiting) -> Flow[Lease]:
        """Each poll is one write that joins or refreshes our place or, our turn come, takes the
        lease; between polls we sleep until the holder's expiry on the store's clock, the next poll,
        or a ring from the releaser (waitline), whichever is sooner. Waiting for shared holders or a
        semaphore's, we announce ourselves at each poll, so that new holders of either kind wait for us
        (an exclusive waiter is not starved by overlapping slot holders)."""
        line = Queue(request.mutex_id)
        announced = False
        try:
            while True:
                pause = None
                try:
                    sent = lease_clock()
                    turn = yield from line.poll(request, waiting.waited_ms())
                    if turn.lease is not None:
                        announced = False  # (taking it ended the slots and the announcement)
                        self.recorder.poke()
                        return turn.lease.with_deadline(sent + request.timeout_ms / 1000)
                    held = waiting.saw(LockHeldError(request.mutex_id, turn.state, asked=EXCLUSIVE),
                                       told=turn.state is not None)
                    pause = line.pause_s(turn, host_name())
                except LockHeldError as refused:
                    held = waiting.saw(refused)
                except StoreUnavailableError as outage:
                    waiting.outage(outage)
                    held = None
                if held is not None:
                    yield from waiting.check(held)
                    seen = waiting.seen
                    if seen is not None and seen.state is not None and seen.state.kind in (SHARED, SEMAPHORE):
                        yield from call("announce_writer", request.mutex_id, request.node_id)
                        announced = True
                    waiting.tell(held)
                yield from nap(waiting.nap_s(pause), line.bell)  # (a ring wakes us)
        finally:
            yield from line.leave()
            if announced:  # best effort: left behind, it lapses in a few seconds
                try:
                    yield from call("withdraw_writer", request.mutex_id, request.node_id)
                except StoreError:
                    pass

    def _wait_with_backoff(self, request: LeaseRequest, waiting: Waiting) -> Flow[Lease]:
        """A try, then jittered exponential backoff (never past the first holder's expiry) until the
        wait ends. After the first, tries skip the extra read that names the holder: one round trip each."""
        while True:
            try:
                return (yield from self.take_flow(request, waited_ms=waiting.waited_ms(), explain=waiting.seen is None))
            except LockHeldError as refused:
                held = waiting.saw(refused)
                yield from waiting.check(held)
                waiting.tell(held)
            except StoreUnavailableError as outage:
                waiting.outage(outage)
            yield from nap(waiting.nap_s(None))

    def renew(self, lease: Lease) -> Lease:
        """Extend our lease by its timeout; raises LeaseExpiredError/NotOwnerError if it is gone."""
        return drive(self.renew_flow(lease), self.store)

    def renew_flow(self, lease: Lease) -> Flow[Lease]:
        sent = lease_clock()
        renewed: Lease = yield from call("renew" if lease.kind == EXCLUSIVE else "renew_slot", lease)
        return renewed.with_deadline(sent + lease.timeout_ms / 1000)

    def renew_token(self, mutex_id: str, token: int, *, timeout: Duration | None = None,
                    node_id: str | None = None) -> Lease:
        """Renew a token-mode lease (or slot) by its fence (``mutexctl renew``, etcd's keep-alive): for
        another ``timeout`` from now, or for its own timeout. LeaseExpiredError/NotOwnerError if it is gone."""
        return drive(self.renew_token_flow(mutex_id, token, timeout=timeout, node_id=node_id), self.store)

    def renew_token_flow(self, mutex_id: str, token: int, *, timeout: Duration | None = None,
                         node_id: str | None = None) -> Flow[Lease]:
        validate_mutex_id(mutex_id)
        validate_token(token)
        state: MutexState | None = yield from call("get", mutex_id)
        kind, limit = (state.kind, state.limit) if state is not None else (EXCLUSIVE, None)
        slot = next((s for s in state.slots if s.fence == token), None) if state is not None else None
        if timeout is not None:
            timeout_ms = duration_ms(timeout, "timeout")
        elif slot is not None and slot.timeout_ms:
            timeout_ms = slot.timeout_ms
        else:  # keep the lease's own length
            timeout_ms = state.timeout_ms if state is not None and state.timeout_ms and kind == EXCLUSIVE else \
                self.settings.timeout_for(mutex_id)
        yield from call("prepare_writes")
        now = datetime.now(UTC)
        try:
            return (yield from self.renew_flow(Lease(mutex_id, node_id or self.node_id, token, timeout_ms, now, now,
                                                     kind=kind, limit=limit)))
        except NotOwnerError as refused:
            yield from self.record_flow(mutex_id, "refused", token, f"renew: {refused.message}", node_id=node_id,
                                        slot=None if kind == EXCLUSIVE else kind)
            raise

    def release(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None,
                kind: str | None = None, reason: str | None = None) -> None:
        """Free the mutex (or this node's slot) if this node (and ``token``, the fence, when given)
        holds it; else NotOwnerError. ``kind``: the lease's, when known (saves a try on a slot);
        ``reason``: why, in the history (a shutdown)."""
        drive(self.release_flow(mutex_id, token=token, node_id=node_id, kind=kind, reason=reason), self.store)

    def release_flow(self, mutex_id: str, *, token: int | None = None, node_id: str | None = None,
                     kind: str | None = None, reason: str | None = None) -> Flow[None]:
        if token is not None:
            validate_token(token)
        yield from call("prepare_writes")
        try:
            line = yield from self._release(validate_mutex_id(mutex_id), node_id or self.node_id, token, kind, reason)
            ring_first_here(line, host_name())
        except NotOwnerError as refused:
            if not isinstance(refused, LeaseExpiredError) or refused.state is None:  # (a late release is recorded)
                yield from self.record_flow(mutex_id, "refused", token, f"release: {refused.message}", node_id=node_id)
            raise
        finally:
            self.recorder.poke()
        log.debug("released %s (fence %s)", mutex_id, token)

    def _release(self, mutex_id: str, node_id: str, token: int | None, kind: str | None,
                 reason: str | None) -> Flow[WakeList]:
        """The one place that chooses between an exclusive release and a slot's: by the lease's kind,
        or, not known (a release by name or token alone), the exclusive one first and a slot's when
        the state it read back shows slots holding the mutex. Without a token, only a lease this
        process's user took: the node id (the host name by default) is shared by every user of a host."""
        user = None if token is not None else self.holder(None).user
        if kind is not None and kind != EXCLUSIVE:
            yield from call("release_slot", mutex_id, node_id, token, reason=reason, user=user)
            return ()
        try:
            line: WakeList = yield from call("release", mutex_id, node_id, token, reason=reason, user=user)
            return line
        except NotOwnerError as refused:
            if kind is not None or not isinstance(refused.state, MutexState) or refused.state.kind == EXCLUSIVE:
                raise
        yield from call("release_slot", mutex_id, node_id, token, reason=reason, user=user)
        return ()

    def record(self, mutex_id: str, kind: str, fence: int | None, reason: str, *, node_id: str | None = None,
               slot: str | None = None) -> None:
        """Put an event that no store operation recorded (a loss a keeper noticed, a refused release
        or renewal) in the history; a store that cannot take it now only loses that entry."""
        drive(self.record_flow(mutex_id, kind, fence, reason, node_id=node_id, slot=slot), self.store)

    def record_flow(self, mutex_id: str, kind: str, fence: int | None, reason: str, *, node_id: str | None = None,
                    slot: str | None = None) -> Flow[None]:
        try:
            yield from call("record_event", LeaseEvent(mutex_id, kind, datetime.now(UTC), node_id or self.node_id,
                                                        fence, self.holder(None),
                                                        reason=mask_url(reason)[:MAX_REASON_CHARS], slot=slot))
        except StoreError as exc:
            log.info("could not record %s of %s in the history: %s", kind, mutex_id, exc.message)

    def force_release(self, mutex_id: str, *, reason: str, node: str | None = None,
                      fence: int | None = None) -> MutexState | None:
        """Break what holds the mutex, on the record: every holder, or (``node``, ``fence``) the one
        of a semaphore or shared lock chosen. Returns the state it had (None: nothing matched)."""
        return drive(self.force_release_flow(mutex_id, reason=reason, node=node, fence=fence), self.store)

    def force_release_flow(self, mutex_id: str, *, reason: str, node: str | None = None,
                           fence: int | None = None) -> Flow[MutexState | None]:
        text = mask_url(validate_reason(reason))
        validate_mutex_id(mutex_id)
        if node is not None:
            validate_node_id(node, what="holder")
        if fence is not None:
            validate_token(fence, what="fence")
        yield from call("prepare_writes")
        state: MutexState | None = yield from call("get", mutex_id)
        before: MutexState | None
        if state is not None and state.kind != EXCLUSIVE:
            before = yield from call("force_release_slots", mutex_id, self.node_id, self.holder(None), text, node=node,
                                     fence=fence)
        elif state is None or node not in (None, state.taken_by) or fence not in (None, state.fence):
            before = None  # an exclusive lease that is not the one named
        else:
            before = yield from call("force_release", mutex_id, self.node_id, self.holder(None), text)
        log.info("force-released %s (was %s): %s", mutex_id, before.shown_state if before else "free", text)
        self.recorder.poke()
        return before

    # -- run-once markers ---------------------------------------------------------------------------

    def once_done(self, mutex_id: str, key: str) -> OnceMarker | None:
        """Who ran (``mutex_id``, ``key``) to success, if anyone has."""
        return drive(self.once_done_flow(mutex_id, key), self.store)

    def once_done_flow(self, mutex_id: str, key: str) -> Flow[OnceMarker | None]:
        marker: OnceMarker | None = yield from call("once_marker", validate_mutex_id(mutex_id), validate_once_key(key))
        return marker

    def mark_once(self, lease: Lease, key: str, command: str | None = None) -> OnceMarker:
        """Record (the lease's mutex, ``key``) done by this holder; the first record stands."""
        return drive(self.mark_once_flow(lease, key, command), self.store)

    def mark_once_flow(self, lease: Lease, key: str, command: str | None = None) -> Flow[OnceMarker]:
        marker: OnceMarker = yield from call("mark_once", lease.mutex_id, validate_once_key(key), lease.node_id,
                                             lease.fence, self.holder(command))
        return marker

    def clear_once(self, mutex_id: str, key: str, *, reason: str) -> OnceMarker | None:
        """Remove a done marker, on the record, so the next ``--once`` runs again."""
        return drive(self.clear_once_flow(mutex_id, key, reason=reason), self.store)

    def clear_once_flow(self, mutex_id: str, key: str, *, reason: str) -> Flow[OnceMarker | None]:
        text = mask_url(validate_reason(reason))
        yield from call("prepare_writes")
        marker: OnceMarker | None = yield from call("clear_once", validate_mutex_id(mutex_id), validate_once_key(key),
                                                    self.node_id, self.holder(None), text)
        self.recorder.poke()
        return marker

    def overview(self, mutex_id: str | None = None, *, patterns: Sequence[str] = (), held_only: bool = False,
                 forced_limit: int = 5, recent: int = 0) -> Overview:
        """Every mutex (or the one named, or those whose names match any of the glob ``patterns``),
        in one read; ``held_only`` keeps the held ones; ``recent``: with that many of the newest
        events of their history."""
        return drive(self.overview_flow(mutex_id, patterns=patterns, held_only=held_only, forced_limit=forced_limit,
                                        recent=recent), self.store)

    def overview_flow(self, mutex_id: str | None = None, *, patterns: Sequence[str] = (), held_only: bool = False,
                      forced_limit: int = 5, recent: int = 0) -> Flow[Overview]:
        if mutex_id is None and len(patterns) == 1 and not is_glob(patterns[0]):
            mutex_id, patterns = patterns[0], ()  # one plain name: read just that one
        view: Overview = yield from call("overview", None if mutex_id is None else validate_mutex_id(mutex_id),
                                         forced_limit, recent)
        if patterns:
            chosen = {s.mutex_id for s in view.states if any(fnmatch.fnmatchcase(s.mutex_id, p) for p in patterns)}
            view = view._replace(states=tuple(s for s in view.states if s.mutex_id in chosen),
                                 forced=tuple(f for f in view.forced if f.mutex_id in chosen),
                                 events=tuple(e for e in view.events if e.mutex_id in chosen),
                                 markers=tuple(m for m in view.markers
                                               if any(fnmatch.fnmatchcase(m.mutex_id, p) for p in patterns)))
        if held_only:
            view = view._replace(states=tuple(s for s in view.states if s.state == "held"))
        return view

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]:
        return self.store.forced_releases(mutex_id, limit)

    def holder(self, command: str | None) -> Holder:
        """Who this process is, for on-call (see requests.this_process)."""
        return this_process(command)._replace(via=self.via)
