"""What both stores say the same way: why a guarded release/renew matched nothing, a late release,
a store newer than this tool, what a waiter's refused poll tells it."""

from __future__ import annotations

from datetime import timedelta

from ..errors import LeaseExpiredError, LimitConflictError, NotOwnerError, SchemaError
from ..models import EXCLUSIVE, SEMAPHORE, Holder, MutexState, Turn
from .steps import SCHEMA_VERSION

# A waiter refreshes its queue entry at every poll (at least every second); one not refreshed for
# this long (its process died, or lost the store) is stale: skipped, and dropped by the next write.
WAITER_STALE_MS = 3000


def waiting_turn(position: int, state: MutexState | None) -> Turn:
    """A waiter's refused poll: its place in line and, from the mutex's state as the poll left it,
    the holder's time left and age on the store's clock, and where it (the mutex free: the first in
    line, who is about to take it) runs."""
    if state is None:
        return Turn(None, position)
    if not state.taken:
        return Turn(None, position, holder_host=state.waiters[0].host if position > 1 and state.waiters else None,
                    state=state)
    held = None if state.since is None else max(0, round((state.store_now - state.since) / timedelta(milliseconds=1)))
    return Turn(None, position, state.remaining_ms, held, state.holder.host if state.holder else None, state)


def loss_error(mutex_id: str, node_id: str, fence: int | None, verb: str, state: MutexState | None,
               user: str | None = None) -> NotOwnerError:
    """Why a guarded release/renew matched nothing, from the mutex's state read after it (``user``: a
    release without a fence ends only a lease that user took)."""
    ours = state is not None and state.taken and state.taken_by == node_id and fence in (None, state.fence) \
        and not state.foreign
    if ours and state is not None and state.state == "expired":
        return LeaseExpiredError(mutex_id, f"cannot {verb} '{mutex_id}': the lease (fence {state.fence}) has expired",
                                 state, hint="acquire it again")
    if state is None or not state.taken:
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is not held", state)
    if state.foreign:
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is held by {state.taken_by} in a lease "
                             "another service wrote", state, remedy="force")
    holder = state.holder
    if fence is None and state.taken_by == node_id and holder is not None and holder.exec_mode:
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': a running 'mutexctl acquire … -- CMD' holds "
                             f"it (pid {holder.pid} on {holder.host}, fence {state.fence}); releasing it would let "
                             "another node in while the command runs", state, remedy="stop-or-force")
    if fence is None and state.taken_by == node_id and holder is not None and other_user(holder, user):
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': user {holder.user} took it (pid {holder.pid} on "
                             f"{holder.host}, fence {state.fence}), not {user}; without its token a release ends "
                             "only a lease of the same user", state, remedy="token-or-force")
    if fence is not None and state.fence > fence:
        # The token was right: the lease ran out and passed on. Breaking the new one would be wrong.
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': its lease (fence {fence}) ended and it passed "
                             f"to {state.taken_by} (fence {state.fence})", state,
                             hint="that is someone else's valid lease: leave it; acquire again to take a new turn")
    mine = node_id + (f" with fence {fence}" if fence is not None else "")
    return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': it is held by {state.taken_by} (fence {state.fence}), "
                         f"not by {mine}", state,
                         remedy="token-or-force")


def released_late_error(mutex_id: str, fence: object) -> LeaseExpiredError:
    """A release that freed our lease but found it past its expiry: the section may have overlapped."""
    return LeaseExpiredError(mutex_id, f"released '{mutex_id}', but its lease (fence {fence}) had already expired: "
                             "another node could have held it meanwhile", remedy="longer-lease")


def newer_store_error(version: int) -> SchemaError:
    """Older tools must not write to a store a newer one set up."""
    return SchemaError(f"the store's schema is at version {version}, newer than this tool's {SCHEMA_VERSION}",
                       hint="upgrade mutexctl on this host; older tools must not write to a newer store")


def slot_owner(kind: str) -> str:
    """The ``takenBy`` of a mutex whose slots are held: seed-only readers see it held by this name
    until the last slot ends (``takenAt + timeout`` is the latest slot's expiry)."""
    return f"mutexctl:{kind}"


def asked(kind: str, limit: int | None) -> str:
    return {EXCLUSIVE: "an exclusive lease", SEMAPHORE: f"a slot of a semaphore of {limit}"}.get(kind, "a shared hold")


def held_as(state: MutexState) -> str:
    if state.kind == SEMAPHORE:
        return f"a semaphore of {state.limit} ({len(state.slots)} held)"
    if state.kind != EXCLUSIVE:
        return f"shared holds ({len(state.slots)})"
    return "an exclusive lease"


def conflict_error(mutex_id: str, kind: str, limit: int | None, state: MutexState) -> LimitConflictError:
    """A holder asked for a name in another way than its current holders took it."""
    return LimitConflictError(f"cannot take '{mutex_id}' as {asked(kind, limit)}: it is held as {held_as(state)}",
                              state, remedy="same-kind")


def other_user(holder: Holder | None, user: str | None) -> bool:
    """Whether a lease's holder is another user than ``user`` (never, where either is unknown)."""
    return bool(user and holder is not None and holder.user and holder.user != user)


def token_mode_slots(state: MutexState, node_id: str, user: str | None = None) -> list[int]:
    """The fences of ``node_id``'s live slots that a release without a token may end (the seed's V for
    a slot): those no running ``mutexctl acquire … -- CMD`` supervises (and, ``user`` given, that user took)."""
    return [s.fence for s in state.slots if s.node == node_id and not (s.holder and s.holder.exec_mode)
            and not other_user(s.holder, user)]


def token_mode_slot(state: MutexState, node_id: str, user: str | None = None) -> int | None:
    """The one slot a release without a token ends: ``node_id``'s only token-mode slot, else None."""
    mine = token_mode_slots(state, node_id, user)
    return mine[0] if len(mine) == 1 else None


def slot_loss_error(mutex_id: str, node_id: str, fence: int | None, verb: str,
                    state: MutexState | None, user: str | None = None) -> NotOwnerError:
    """Why a guarded release/renew of a slot matched nothing."""
    if state is None or state.kind == EXCLUSIVE or not state.slots:
        return loss_error(mutex_id, node_id, fence, verb, state, user)
    if fence is None:
        mine = token_mode_slots(state, node_id, user)
        others = sorted({s.holder.user for s in state.slots if s.fence not in mine and s.node == node_id
                         and s.holder is not None and other_user(s.holder, user)})
        if not mine and others:
            return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': this node's slots of it were taken by user "
                                 f"{', '.join(others)}, not {user}; without its token a release ends only a slot of "
                                 "the same user", state, remedy="token-or-force")
        return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': this node holds "
                             f"{'no slot of it' if not mine else f'{len(mine)} slots of it'} that a release without "
                             "a token may end", state, remedy="token")
    return NotOwnerError(mutex_id, f"cannot {verb} '{mutex_id}': no live slot with fence {fence} held by {node_id} "
                         f"(it is held as {held_as(state)})", state,
                         hint="its slot ended and may be someone else's now: acquire again to take a new one")
