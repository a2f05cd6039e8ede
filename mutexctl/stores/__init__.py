"""The store boundary: one Protocol, implementations chosen by URL scheme.

Every method is one atomic operation on the store (one round trip on a server). Stores never sleep
or retry; waiting, deadlines and renewal belong to ``mutexctl.mutex``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, LeaseExpiredError, NotOwnerError

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import Ack, ForcedRelease, Holder, Lease, Message, MutexState, Overview
    from ..schema import SchemaState

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/?#]*@)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """Hide ``user:password@`` in a URL (and any URL inside a longer text) before it is shown."""
    return _CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", url)


def loss_error(mutex_id: str, node_id: str, fence: int | None, verb: str, state: MutexState | None) -> NotOwnerError:
    """Why a guarded release/renew matched nothing, from the mutex's state read after it."""
    ours = state is not None and state.taken and state.taken_by == node_id and fence in (None, state.fence) \
        and not state.foreign
    if ours and state is not None and state.state == "expired":
        return LeaseExpiredError(mutex_id, f"cannot {verb} '{mutex_id}': the lease (fence {state.fence}) has expired",
                                 state, hint="acquire it again")
    if state is None or not state.taken:
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is not held", state)
    if state.foreign:
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is held by {state.taken_by} in a lease "
                             "another service wrote", state, hint="--force --reason breaks it, on the record")
    mine = node_id + (f" with fence {fence}" if fence is not None else "")
    return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is held by {state.taken_by} (fence {state.fence}), "
                         f"not by {mine}", state,
                         hint="pass the --token that acquire printed, or --force --reason to break it")


def released_late_error(mutex_id: str, fence: object) -> LeaseExpiredError:
    """A release that freed our lease but found it past its expiry: the section may have overlapped."""
    return LeaseExpiredError(mutex_id, f"released '{mutex_id}', but its lease (fence {fence}) had already expired: "
                             "another node could have held it meanwhile",
                             hint="use a longer --timeout, or renew while you work")


class Store(Protocol):
    """What the core needs from a store. Raises StoreUnavailableError/StoreError for driver failures."""

    url: str  # masked, safe to show
    clock: str  # whose clock judges expiry: "host" (this machine's) or "server" (the store's)

    def try_acquire(self, mutex_id: str, node_id: str, timeout_ms: int, holder: Holder) -> Lease:
        """Take the mutex iff it is free or its lease expired; else raise LockHeldError."""

    def renew(self, lease: Lease) -> Lease:
        """Extend our unexpired lease by its timeout; else raise LeaseExpiredError/NotOwnerError."""

    def release(self, mutex_id: str, node_id: str, fence: int | None) -> None:
        """Free the mutex iff ``node_id`` (and ``fence``, when given) hold it; else NotOwnerError.

        Raises LeaseExpiredError (after freeing it) if our lease had already expired.
        """

    def force_release(self, mutex_id: str, by_node: str, by: Holder, reason: str) -> MutexState | None:
        """Free the mutex whoever holds it and record why; returns the state it had, None if free."""

    def get(self, mutex_id: str) -> MutexState | None: ...

    def overview(self, mutex_id: str | None, forced_limit: int) -> Overview:
        """Every mutex (or the one named), its latest forced releases, the schema record and the
        store's now, in one read (one round trip on a server)."""

    def forced_releases(self, mutex_id: str | None = None, limit: int = 20) -> list[ForcedRelease]: ...

    def schema_state(self) -> SchemaState | None:
        """The ``meta`` record, or None on a store never initialized."""

    def prepare_writes(self, schema_version: int) -> None:
        """Called once before a Service's first write, with the store's schema version (0: none)."""

    def schema_problems(self) -> list[tuple[int, str]]:
        """(step, what is missing) for parts of applied steps that are gone (e.g. a dropped index)."""

    def apply_schema_step(self, step: int) -> None:
        """Apply schema step ``step``; idempotent."""

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the schema version to ``step`` and log it, in one atomic write."""

    def retention_drift(self) -> tuple[int, int] | None:
        """(seconds the store keeps the broadcast log now, seconds configured) when they differ; None
        when they match or the store fixes no expiry (SQLite prunes by each writer's setting)."""

    def apply_retention(self) -> None:
        """Make the store keep the broadcast log for the configured ``log_retention``."""

    def server_report(self) -> dict[str, str]:
        """Facts about the store for init-schema's output; raises if the server is unsupported."""

    # intracom: a per-channel counter, the message log, acks and the live-node registry

    def next_seq(self, channel: str) -> int:
        """Take the channel's next sequence number (one atomic increment)."""

    def latest_seq(self, channel: str) -> int: ...

    def append_message(self, message: Message) -> None: ...

    def messages_after(self, channel: str, seq: int, limit: int = 100) -> list[Message]: ...

    def get_message(self, message_id: str) -> Message | None: ...

    def record_ack(self, ack: Ack) -> bool:
        """Store the ack; False if this node had already acked this message."""

    def acks(self, message_id: str) -> list[Ack]: ...

    def acked(self, node: str, message_ids: list[str]) -> set[str]: ...

    def register_node(self, node: str, channel: str, host: str, pid: int) -> int | None:
        """Mark the listener alive now (the heartbeat too); returns its saved cursor, if any."""

    def save_cursor(self, node: str, channel: str, cursor: int) -> None: ...

    def live_nodes(self, channel: str, within_s: float) -> list[str]: ...

    def close(self) -> None: ...


def open_store(settings: Settings) -> Store:
    """Open the store named by ``settings.store``; only the chosen driver is imported."""
    url = settings.store
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url, log_retention_s=settings.log_retention_s)
    if scheme in ("mongodb", "mongodb+srv"):
        from .mongodb import MongoStore  # pymongo is imported only for a MongoDB URL

        return MongoStore(url, database=settings.database, collection=settings.collection,
                          connect_timeout_ms=settings.connect_timeout_ms, log_retention_s=settings.log_retention_s)
    raise ConfigError(f"unknown store URL {mask_url(url)!r}",
                      hint="use sqlite:///path/to/file.db or mongodb://host/ (mongodb+srv:// too)")
