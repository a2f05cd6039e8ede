"""Frozen records passed between the stores, the features and the CLI: pure data, no behaviour
beyond what the data itself tells (a mutex's state, an ack report's silent nodes).

They are NamedTuples rather than frozen dataclasses for start-up time: making a dataclass costs
about 0.9 ms at import, a NamedTuple 0.15 ms, and every CLI run imports all of these.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

DEFAULT_CHANNEL = "default"  # the broadcast channel when none is named


class Holder(NamedTuple):
    """Who runs the critical section, for on-call: not used to decide ownership (``node_id`` is).

    ``exec_mode``: a running ``mutexctl acquire NAME -- CMD`` holds the lease for its command, so a
    release without the lease's token must not end it (that would let another node in while the
    command runs). ``via``: what took it — ``SERVICE`` (a program through the library), ``CLI`` (a
    token-mode ``mutexctl acquire``, whose lease outlives the process on purpose), None (not known:
    written by an older release or another program); exec mode is ``exec_mode``.
    """

    host: str
    pid: int
    user: str
    command: str
    exec_mode: bool = False
    via: str | None = None

    @property
    def taken_as(self) -> str | None:
        """How the lease is held: ``exec`` (a supervised command), ``service``, ``cli``, None (not known)."""
        return "exec" if self.exec_mode else self.via


SERVICE = "service"  # Holder.via
CLI = "cli"


class Lease(NamedTuple):
    """One holding of a mutex. ``fence`` identifies it; resources can refuse older fences.

    ``local_deadline`` is a ``clock.lease_clock()`` instant before which the store cannot yet consider
    the lease expired: the time we *sent* the acquire/renew plus the timeout. It is conservative
    because the store computed the real expiry from a later instant of its own clock.
    """

    mutex_id: str
    node_id: str
    fence: int
    timeout_ms: int
    taken_at: datetime
    expires_at: datetime
    local_deadline: float = 0.0
    kind: str = "exclusive"  # or "semaphore" (one of ``limit`` slots), "shared" (a reader's hold)
    limit: int | None = None  # a semaphore's number of slots

    def with_deadline(self, local_deadline: float) -> Lease:
        return self._replace(local_deadline=local_deadline)


EXCLUSIVE, SEMAPHORE, SHARED = "exclusive", "semaphore", "shared"
ONCE_CLEARED = "once-cleared"  # the lease history's event of a run-once marker removed by an operator


class LeaseRequest(NamedTuple):
    """A lease asked for, resolved once where it is asked for (``requests.resolve``: the timeout in
    ms, the wait in seconds, the kind, the node and the holder) and passed down as it is: to the
    waiting loop, the waiters' queue, the store, ``hold`` and ``run_under_lease``."""

    mutex_id: str
    node_id: str
    timeout_ms: int
    holder: Holder  # who asks (its ``exec_mode``: a running command is supervised under the lease)
    wait_s: float = 0.0  # how long to wait for it (inf: for ever; 0: one try)
    kind: str = EXCLUSIVE  # or SEMAPHORE (one of ``limit`` slots), SHARED (a reader's hold)
    limit: int | None = None


class SlotHolder(NamedTuple):
    """One holder of a semaphore's slot, or of a shared hold; its own fence and expiry."""

    node: str
    fence: int
    since: datetime | None  # when this holder took it
    expires_at: datetime | None
    remaining_ms: int  # time left on the store's clock (> 0: only live holders are listed)
    timeout_ms: int | None
    holder: Holder | None


class Waiter(NamedTuple):
    """A process queued for an exclusive lease (``acquire --wait``): served first come, first served
    by ``ticket``; its entry vanishes when it stops refreshing it (stores.common.WAITER_STALE_MS)."""

    node: str
    host: str | None
    pid: int | None
    since: datetime  # when it started waiting (the store's clock)
    waited_ms: int  # how long it has waited, at the time of reading
    ticket: int


# A released mutex's live waiters, in line order: (host, token) — whom the releaser may ring (waitline).
WakeList = tuple[tuple[str | None, str], ...]


class Turn(NamedTuple):
    """What a waiter's poll found: the lease (its turn came), else its place and when to look again."""

    lease: Lease | None
    position: int = 0  # 1: next in line (live waiters ahead of it + 1)
    holder_left_ms: int | None = None  # the holder's lease's time left on the store's clock (None: not held)
    held_for_ms: int | None = None  # how long the current holder has held it
    holder_host: str | None = None  # where the holder (the mutex free: the first in line) runs, if mutexctl
    # (a mutexctl process rings the next waiter on its host when it releases); these three: stores.common
    state: MutexState | None = None  # the mutex as the poll left it (who holds it, who waits)


class OnceMarker(NamedTuple):
    """``acquire NAME --once KEY``: who ran the command to exit 0 for (NAME, KEY), and when (store's clock)."""

    mutex_id: str
    key: str
    at: datetime
    by_node: str
    fence: int | None
    holder: Holder | None


class MutexState(NamedTuple):
    """A mutex as the store sees it at ``store_now`` (the store's clock)."""

    mutex_id: str
    taken: bool
    taken_by: str | None
    taken_at: datetime | None
    expires_at: datetime | None
    timeout_ms: int | None
    fence: int
    holder: Holder | None
    store_now: datetime
    remaining_ms: int | None  # time left on the store's clock; None when free or when its expiry is unknown
    foreign: bool = False  # taken by a write of another service (mutexctl's holder details do not apply)
    problem: str | None = None  # why its expiry is unknown, or why mutexctl will not take it
    copies: int = 1  # documents that carry this name (more than one: another service made copies)
    since: datetime | None = None  # when this holder first took it (``taken_at`` moves with renewals on MongoDB)
    kind: str = EXCLUSIVE  # SEMAPHORE or SHARED while slots are held (then ``slots`` lists the live ones)
    limit: int | None = None  # a semaphore's number of slots
    slots: tuple[SlotHolder, ...] = ()
    writer_waiting: str | None = None  # shared: an exclusive waiter that new shared holds wait for
    waiters: tuple[Waiter, ...] = ()  # processes queued for it, in ticket order

    @property
    def state(self) -> str:
        """``held``, ``expired`` (taken but past its timeout: anyone may take it), ``free``, or
        ``duplicate`` (several documents carry the name: mutexctl takes none of them).

        A lease whose expiry cannot be read is ``held``: it is never judged expired. A semaphore or
        shared lock is ``held`` while any slot is, else ``free``.
        """
        if self.copies > 1:
            return "duplicate"
        if self.kind != EXCLUSIVE:
            return "held" if self.slots else "free"
        if not self.taken:
            return "free"
        if self.remaining_ms is None or self.remaining_ms > 0:
            return "held"
        return "expired"

    @property
    def shown_state(self) -> str:
        """``state``, counted for slots: ``3/5 held`` (a semaphore), ``2 shared`` (readers)."""
        if self.kind == SEMAPHORE and self.slots:
            return f"{len(self.slots)}/{self.limit} held"
        if self.kind == SHARED and self.slots:
            return f"{len(self.slots)} shared"
        return self.state


class LeaseEvent(NamedTuple):
    """One entry of a mutex's history, stamped with the store's clock. ``kind``: ``acquire``,
    ``takeover`` (of a lease that had expired: ``previous_holder``, ``late_ms`` past its end),
    ``release``, ``release-late`` (after the lease's end), ``forced`` (``reason``), ``lost`` (a keeper
    noticed its lease gone: ``reason``), ``refused`` (a release or renewal that was not the holder's),
    ``once-cleared`` (a run-once marker removed by an operator, so it runs again: ``previous_holder`` and
    ``previous_fence`` of the run it had recorded, ``reason`` ``[once KEY] …``)."""

    mutex_id: str
    kind: str
    at: datetime
    node: str | None
    fence: int | None
    holder: Holder | None = None  # host, pid, user, command (masked) of whoever did it
    waited_ms: int | None = None  # acquire: how long the acquirer waited
    held_ms: int | None = None  # release: how long the lease was held
    previous_holder: str | None = None
    previous_fence: int | None = None
    late_ms: int | None = None  # takeover: how long after the previous lease's end
    reason: str | None = None
    slot: str | None = None  # a semaphore's or shared lock's kind, for their holders' events


class ForcedRelease(NamedTuple):
    """The record an operator's ``release --force`` leaves behind."""

    mutex_id: str
    at: datetime
    by_node: str
    by_user: str
    by_host: str
    reason: str
    previous_holder: str | None
    previous_fence: int | None  # None when the lease broken was another service's (it has no fence)


class AppliedStep(NamedTuple):
    step: int
    applied_at: datetime
    applied_by: str


class SchemaState(NamedTuple):
    """The store's ``meta`` record: ``{version, appliedAt, appliedBy, toolVersion}`` and the step log."""

    version: int
    applied_at: datetime
    applied_by: str
    tool_version: str
    steps: tuple[AppliedStep, ...] = ()


class Overview(NamedTuple):
    """What ``status`` shows, read at once: the mutexes, recent forced releases, the schema record,
    and the store's clock at the time of reading (the one leases are judged on); run-once markers."""

    states: tuple[MutexState, ...]
    forced: tuple[ForcedRelease, ...]
    schema: SchemaState | None
    store_now: datetime
    markers: tuple[OnceMarker, ...] = ()
    events: tuple[LeaseEvent, ...] = ()  # the newest history events, when asked for (status --watch)


class InitResult(NamedTuple):
    """What init-schema found and did; ``pending`` is what a dry run would apply."""

    version_before: int
    version: int
    applied: tuple[int, ...]
    server: dict[str, str]
    pending: tuple[int, ...] = ()
    # (seconds kept before, seconds now) when a TTL was (or, dry, would be) changed to its setting's
    retention: tuple[int, int] | None = None
    retention_setting: str = "log_retention"  # or history_retention


class LeaderRecord(NamedTuple):
    """What a leader announced for its term (its lease's fence), stamped with the store's clock."""

    fence: int
    node: str
    value: str
    at: datetime


class RunResult(NamedTuple):
    """How a command run under a lease ended: its status, and why the lease was lost, if it was."""

    status: int
    fence: int
    lost: str | None = None
    stopped: bool = False  # the loss was noticed while the command ran, and it was stopped
    lost_kind: str | None = None  # what ended the lease: "refused" (forced or expired), "outage", "suspended"
    waited_s: float | None = None  # from the ask to the lease (nothing ran: None)
    held_s: float | None = None  # from the lease to its release (or loss)
    release_error: str | None = None  # the command ended, but its lease could not be released (why)
    done: OnceMarker | None = None  # --once: already done (by this marker's holder); nothing ran


class Message(NamedTuple):
    """One broadcast: ``payload`` is JSON text; ``expected`` are the nodes the sender waits for."""

    id: str
    channel: str
    seq: int
    action: str
    payload: str
    sender: str
    to: tuple[str, ...]
    expected: tuple[str, ...]
    at: datetime

    @property
    def value(self) -> Any:
        """The payload decoded (a dict, a list, or another JSON value)."""
        import json

        return json.loads(self.payload)


class Ack(NamedTuple):
    """A node's answer to a message: its handler's exit status and how long it ran."""

    message_id: str
    node: str
    at: datetime
    status: int
    duration_ms: int


class Registration(NamedTuple):
    """A listener's standing on a channel: ``since``, the channel's last number at its first
    registration (every later message is for it); ``cursor``, the position it saved (None: none)."""

    cursor: int | None
    since: int | None


class NodeInfo(NamedTuple):
    """A node registered on a channel, as ``mutexctl nodes`` shows it; times on the store's clock."""

    node: str
    channel: str
    last_seen: datetime
    host: str | None
    pid: int | None
    cursor: int | None
    since: int | None
    latest: int  # the channel's last number
    left_at: datetime | None = None  # when its listener stopped by itself (--once, a signal), on the store's clock


class AckReport(NamedTuple):
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


@lru_cache(maxsize=4096)  # (status at fleet scale says the same timeouts thousands of times)
def human_ms(milliseconds: float) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_ms(moment: datetime) -> str:
    """The seed's ``takenAt`` form: ``2026-11-27T12:03:06.908Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # (without "+00:00")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time as the stores write it (``…Z`` reads as UTC, since Python 3.11)."""
    return datetime.fromisoformat(text)
