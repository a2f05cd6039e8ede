"""What the features need from a store, one small protocol per concern.

Every method is one atomic operation on the store (one round trip on a server). Stores never sleep,
loop or retry: waiting, deadlines and renewal belong to the features above them. Driver errors
become StoreUnavailableError/StoreError, the driver's error kept as ``__cause__``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from ..models import (
    Ack,
    ForcedRelease,
    Holder,
    LeaderRecord,
    Lease,
    LeaseEvent,
    LeaseRequest,
    Message,
    MutexState,
    NodeInfo,
    OnceMarker,
    Overview,
    Registration,
    SchemaState,
    Turn,
    WakeList,
)

# What a store that does not exist is, to its opener: made ("create", the default: lock commands and
# services), refused ("fail": StoreMissingError; nothing is created), or read as empty ("empty").
IfMissing = Literal["create", "fail", "empty"]


class StoreInfo(Protocol):
    url: str  # masked, safe to show
    history_retention_s: float  # how long the lease history is kept
    clock: str  # whose clock judges expiry: "host" (this machine's) or "server" (the store's)
    expires_by_ttl: bool  # the store deletes old log entries itself (TTL indexes), with a retention to keep

    def close(self) -> None: ...


class SchemaGate(StoreInfo, Protocol):
    def prepare_writes(self) -> SchemaState | None:
        """Before the first write: refuse (SchemaError) a store newer than this tool, and make sure
        mutexId is unique. Returns the schema record; answered from memory after the first call."""


class ExclusiveLeases(StoreInfo, Protocol):
    """The leases part: one holder at a time."""

    def try_acquire(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        """Take the mutex for ``request`` (exclusive) iff it is free or its lease expired; else raise
        LockHeldError. The history gets the event (how long the acquirer waited: ``waited_ms``) in the
        same write."""

    def renew(self, lease: Lease) -> Lease:
        """Extend our unexpired exclusive lease by its timeout; else raise LeaseExpiredError/NotOwnerError."""

    def release(self, mutex_id: str, node_id: str, fence: int | None, *, reason: str | None = None,
                user: str | None = None) -> WakeList:
        """Free the exclusive lease iff ``node_id`` (and ``fence``, when given) hold it; else
        NotOwnerError (its ``state``, read after it, tells whether slots hold the mutex instead).
        Without a fence, ``user`` given: only a lease that user took (or one whose user is not recorded).
        Returns the mutex's live waiters, read in the same operation.

        Raises LeaseExpiredError (after freeing it) if our lease had already expired. ``reason``
        (e.g. a shutdown) goes into the release's history event.
        """

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        """Free the mutex whoever holds it and record why, so that the two cannot diverge; returns
        the state it had, None if it was free."""


class WaitersQueue(StoreInfo, Protocol):
    """The queue part: exclusive waiters served first come, first served."""

    def wait_turn(self, request: LeaseRequest, *, token: str, waited_ms: int) -> Turn:
        """A waiter's poll, one write: join the mutex's queue (``token`` names this waiter; the first
        poll takes a ticket), or refresh our place in it; when the lease is free or expired and no
        live waiter has an older ticket, take it (as try_acquire) and leave the queue."""

    def leave_queue(self, mutex_id: str, token: str) -> None:
        """Leave the queue (a wait that ended without the lease); idempotent."""


class SlotLeases(StoreInfo, Protocol):
    """The slots part: semaphores (N holders) and shared holds, each holder with its own fence."""

    def try_acquire_slot(self, request: LeaseRequest, *, waited_ms: int = 0) -> Lease:
        """Take a semaphore's slot (``request.kind`` SEMAPHORE, of ``limit``) or a shared hold (SHARED) iff no
        exclusive lease holds the mutex, its live holders took it the same way (kind and limit), and
        there is room (fewer than ``limit`` live slots; for a shared hold, no writer announced); else
        LockHeldError. One atomic operation; each holder gets its own fence and expiry, and an ended
        slot is reclaimed by the next taker."""

    def renew_slot(self, lease: Lease) -> Lease:
        """Extend our live slot by its timeout; else NotOwnerError."""

    def release_slot(self, mutex_id: str, node_id: str, fence: int | None, *, reason: str | None = None,
                     user: str | None = None) -> None:
        """End our slot (``fence`` None: this node's one token-mode slot of ``user``, stores.common.token_mode_slot);
        else NotOwnerError. LeaseExpiredError (after ending it) if it had already expired. ``reason``:
        as for ``release``."""

    def force_release_slots(self, mutex_id: str, by_node: str, by: Holder, reason: str, *, node: str | None,
                            fence: int | None) -> MutexState | None:
        """End the live slots chosen (by holder node, by fence, or all), each on the record, in one
        atomic operation; returns the state before, None when none matched."""

    def announce_writer(self, mutex_id: str, node_id: str) -> None:
        """An exclusive acquirer waiting on shared holders: new shared holds wait while it waits
        (the announcement lasts a few seconds; each failed try renews it)."""

    def withdraw_writer(self, mutex_id: str, node_id: str) -> None:
        """The announced acquirer stopped waiting (it took the mutex, gave up, or was interrupted):
        new shared holds no longer wait for it."""


class OnceMarkers(StoreInfo, Protocol):
    """The run-once part."""

    def once_marker(self, mutex_id: str, key: str) -> OnceMarker | None: ...

    def mark_once(self, mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> OnceMarker:
        """Record (mutex, key) done, stamped with the store's clock; the first record stands."""

    def clear_once(self, mutex_id: str, key: str, by_node: str, by: Holder, reason: str) -> OnceMarker | None:
        """Remove the marker on the record (the forced-release history); None if there was none."""


class LeaderRecords(StoreInfo, Protocol):
    """The election part: what each leader announced for its term."""

    def record_leader(self, mutex_id: str, node_id: str, fence: int, value: str) -> bool:
        """Announce ``value`` for the term ``fence`` of ``node_id``'s lease; a record of a later term
        stands (a deposed leader's late write changes nothing). True if it was written."""

    def leader_record(self, mutex_id: str) -> LeaderRecord | None:
        """The newest announcement (compare its fence with the lease's)."""


class LeaseHistory(StoreInfo, Protocol):
    """The history part."""

    def pending_events(self) -> int:
        """How many events of this process's operations wait to be written to the history."""

    def flush_events(self) -> None:
        """Write them (one insert); StoreError keeps them for the next try."""

    def record_event(self, event: LeaseEvent) -> None:
        """Add an event noticed outside a store operation (a keeper's loss, a refused release)."""

    def history(self, mutex_ids: list[str] | None, *, since_s: float | None = None, node: str | None = None,
                limit: int = 100) -> list[LeaseEvent]:
        """The lease history of ``mutex_ids`` (None: every mutex), newest first; ``since_s``: only the last
        that many seconds, on the store's clock; ``node``: what it did, or what was taken from it."""


class StatusReads(StoreInfo, Protocol):
    """What on-call reads."""

    def get(self, mutex_id: str) -> MutexState | None: ...

    def overview(self, mutex_id: str | None, forced_limit: int, recent: int = 0) -> Overview:
        """Every mutex (or the one named), its latest forced releases, the schema record and the
        store's now, in one read (one round trip on a server)."""

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]: ...


class LeaseStore(SchemaGate, ExclusiveLeases, WaitersQueue, SlotLeases, OnceMarkers, LeaderRecords, LeaseHistory,
                 StatusReads, Protocol):
    """Everything leases need: the parts above, side by side."""


class SchemaStore(StoreInfo, Protocol):
    def schema_state(self) -> SchemaState | None:
        """The ``meta`` record, or None on a store never initialized."""

    def apply_schema_step(self, step: int) -> None:
        """Apply the items of step ``step`` (stores.steps); idempotent."""

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the schema version to ``step`` and log it, in one atomic write."""

    def schema_problems(self) -> list[tuple[int, str]]:
        """(step, what is missing) for parts of applied steps that are gone (e.g. a dropped index)."""

    def server_report(self) -> dict[str, str]:
        """Facts about the store for init-schema's output; raises if the server is unsupported."""

    def store_time(self) -> datetime:
        """The store's clock now, in one round trip (doctor times it and compares it with ours)."""


@runtime_checkable
class RetentionStore(SchemaStore, Protocol):
    """A store that deletes old log entries itself (``expires_by_ttl``): its retention is fixed when
    the TTL index is made, so a changed ``log_retention`` must be applied to it."""

    def retention_drift(self) -> tuple[str, int, int] | None:
        """(the setting, seconds a TTL index keeps now, seconds configured) when they differ."""

    def apply_retention(self) -> None: ...


class LogStore(StoreInfo, Protocol):
    """The broadcast log: a counter per channel, messages, acks and the live-node registry."""

    def next_seq(self, channel: str) -> int:
        """Take the channel's next sequence number (one atomic increment)."""

    def latest_seq(self, channel: str) -> int: ...

    def append_message(self, message: Message) -> Message:
        """Insert ``message`` stamped with the store's clock (``message.at`` is not used); returns it
        as stored. Retention counts from that stamp, never from a sender's clock."""

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]: ...

    def get_message(self, message_id: str) -> Message | None: ...

    def record_ack(self, message_id: str, node: str, status: int, duration_ms: int) -> bool:
        """Store the ack, stamped with the store's clock; False if this node had already acked it."""

    def acks(self, message_id: str) -> list[Ack]: ...

    def acked(self, node: str, message_ids: list[str]) -> set[str]: ...

    def register_node(self, node: str, channel: str, host: str, pid: int, *, since: int) -> Registration:
        """Mark the listener alive now, on the store's clock (the heartbeat too). ``since`` (the
        channel's last number, read *before* this call) is kept from the node's first registration
        on; returns that and the node's saved cursor."""

    def save_cursor(self, node: str, channel: str, cursor: int) -> None: ...

    def leave_node(self, node: str, channel: str) -> None:
        """The listener stopped by itself (``listen --once``, a signal): once its heartbeat is old, it
        has not gone silent (doctor), until it registers again."""

    def live_nodes(self, channel: str, within_s: float) -> list[str]:
        """Nodes whose heartbeat is at most ``within_s`` old by the store's clock (one that just left,
        ``listen --once``, counts: what is sent now is for it, at its next run)."""

    def nodes(self, channel: str | None) -> tuple[datetime, list[NodeInfo]]:
        """The store's now, and every registered node (of ``channel``, or of all), by channel and name."""


class Store(LeaseStore, SchemaStore, LogStore, Protocol):
    """Everything: what ``open_store`` returns."""
