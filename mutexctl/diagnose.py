"""Why a lease is in its state, in words on-call can act on: holder liveness, clock skew, and the
judgement ``status`` prints per mutex. Library users get the same answers the CLI shows."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from .identity import host_name
from .keeper import renew_interval_s
from .models import CLI, EXCLUSIVE, SEMAPHORE, SERVICE, Holder, MutexState, human_ms

Alive = Callable[[Holder | None], bool | None]


def holder_alive(state: MutexState, this_host: str | None = None) -> bool | None:
    """Whether the holder's process still runs: known only when it ran on this host."""
    return _alive(state.holder, this_host or host_name())


def liveness(this_host: str) -> Alive:
    """``holder_alive`` for one reading of many leases: each pid is asked once (a fleet's status has
    thousands of leases and a few processes holding them)."""
    seen: dict[int, bool | None] = {}

    def alive(holder: Holder | None) -> bool | None:
        if holder is None or holder.host != this_host or not holder.pid:
            return None
        if holder.pid not in seen:
            seen[holder.pid] = _alive(holder, this_host)
        return seen[holder.pid]

    return alive


def suspended(pid: int) -> bool:
    """Whether the process on this host is stopped (a job suspended with Ctrl-Z, SIGSTOP), as Linux's
    /proc tells; False where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return False
    return bool(fields) and fields[0] in (b"T", b"t")


def _alive(holder: Holder | None, this_host: str) -> bool | None:
    if holder is None or holder.host != this_host or not holder.pid:
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why(state: MutexState, this_host: str | None = None, alive: Alive | None = None) -> str:
    """Why a mutex is in its state, and who waits for it (``alive``: a ``liveness`` shared by a reading)."""
    text = _why(state, alive or liveness(this_host or host_name()))
    if state.waiters:
        first = state.waiters[0]
        text += (f"; {len(state.waiters)} waiting, served in order (next: {first.node}, waiting "
                 f"{human_ms(first.waited_ms)})")
    return text


def _why(state: MutexState, alive: Alive) -> str:
    shown = state.state
    if shown == "duplicate":
        return state.problem or "several documents carry this name: mutexctl will not take it"
    taker = "the first waiter in line takes it at its next poll" if state.waiters else "the next acquire takes it"
    if shown == "free":
        last = f" (last held by {state.taken_by})" if state.taken_by else ""
        return f"free{last}: {taker}"
    if shown == "expired":
        return f"lease expired: {taker}"
    if state.kind != EXCLUSIVE:
        return _why_slots(state, alive)
    if state.remaining_ms is None:
        return (f"held by {state.taken_by}, expiry unknown: {state.problem}; it is never judged expired: "
                f"free it with release --force --reason once its holder is done")
    left = human_ms(state.remaining_ms)
    if state.foreign:
        return (f"held by {state.taken_by}, a lease another service wrote (not mutexctl); it ends in {left} "
                f"unless that service renews it")
    running = alive(state.holder)
    pid = state.holder.pid if state.holder else "?"
    if running is False:
        return f"{_exited(state, pid)}: it frees itself in {left}, when released by its token, or with " \
               "release --force --reason"
    if running and state.holder is not None and suspended(state.holder.pid):
        return (f"holder pid {pid} ({_taken_as(state)}) is suspended (Ctrl-Z or SIGSTOP): nothing renews the lease "
                f"meanwhile; it ends in {left} unless the holder is resumed")
    if running:
        return f"holder pid {pid} ({_taken_as(state)}) is running; lease ends in {left} unless renewed"
    return f"held by {state.taken_by} on another host; lease ends in {left} unless renewed"


_AS = {"exec": "a supervised command", SERVICE: "a service", CLI: "mutexctl acquire without a command"}


def _taken_as(state: MutexState) -> str:
    return _AS.get(state.holder.taken_as or "", "holder") if state.holder else "holder"


def _exited(state: MutexState, pid: object) -> str:
    """An exited holder, said by how it held the lease."""
    taken_as = state.holder.taken_as if state.holder else None
    if taken_as == CLI:
        return (f"holder pid {pid} has exited on this host and nobody renews the lease (normal after acquire "
                "without a command: the lease is the shell's to release)")
    if taken_as == SERVICE:
        return (f"the service that held it (pid {pid}) has exited on this host without releasing it (it crashed, "
                "was killed, or ended without closing its Service)")
    if taken_as == "exec":
        return f"the mutexctl that ran a command under it (pid {pid}) has exited on this host without releasing it"
    return f"holder pid {pid} has exited on this host and nobody renews the lease"


def _why_slots(state: MutexState, alive: Alive) -> str:
    """A semaphore's or shared lock's holders: how many, the next to end, the dead ones here."""
    soonest = min(state.slots, key=lambda slot: slot.remaining_ms)
    counted = (f"{len(state.slots)} of {state.limit} slots held" if state.kind == SEMAPHORE
               else f"{len(state.slots)} shared holder{'s' if len(state.slots) > 1 else ''}")
    text = f"{counted}; the next to end is {soonest.node}'s (fence {soonest.fence}) in {human_ms(soonest.remaining_ms)}"
    dead = [slot for slot in state.slots if alive(slot.holder) is False]
    if dead:
        text += (f"; exited on this host without releasing: {', '.join(f'fence {d.fence}' for d in dead)} "
                 "(release --force --reason --fence F frees one)")
    if state.writer_waiting:
        text += f"; {state.writer_waiting} waits to take it exclusively: new shared holds wait for it"
    return text


def clock_skew_ms(store_now: datetime, sent: datetime, received: datetime) -> float:
    """How far the store's clock is from ours: it read its clock between our send and receive, so
    compare with the midpoint of the request."""
    return (store_now - (sent + (received - sent) / 2)).total_seconds() * 1000


def noticed_within(state: MutexState) -> str:
    """How soon a mutexctl still running a command under ``state``'s lease notices it was broken."""
    return human_ms(renew_interval_s(state.timeout_ms or 0) * 1000)
