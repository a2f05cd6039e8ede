"""A command run under a lease (``mutexctl acquire NAME -- CMD``).

The supervision, as consul's ``lock`` and util-linux's ``flock`` do it, in one function: wait for the
first of {the command exited, the lease was lost, a signal came}, then act. The command's group is
stopped before its lease could pass to another node; signals are forwarded; a SIGKILLed mutexctl
takes the group with it, and so does a frozen one at the lease's deadline (``watcher``); on a
terminal the command is a job (``group``, ``terminal``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable, Sequence

from ..errors import NotOwnerError, StoreError, UsageError
from ..keeper import LeaseKeeper, lease_stop_grace_s
from ..leases import Leases
from ..logs import logger
from ..models import Lease, LeaseRequest, OnceMarker, RunResult, human_ms
from ..waiting import WaitAbandoned, WaitCallback
from .group import CommandGroup

log = logger(__name__)

# The least time a command may have before mutexctl would have to stop it again.
MIN_RUN_S = 0.05


def run_under_lease(leases: Leases, request: LeaseRequest, argv: Sequence[str], *,
                    on_wait: WaitCallback | None = None, once: str | None = None, stdin: bool = True,
                    on_taken: Callable[[Lease], object] | None = None) -> RunResult:
    """Run ``argv`` while holding the lease ``request`` asks for (a mutex, one of a semaphore's slots,
    or a shared hold); stop its process group before the lease could pass on. The holder on record
    is the command (``argv``), supervised (its lease a plain release cannot end).

    With ``once`` (a key): if (mutex, key) is marked done, nothing runs (``RunResult.done``), also when
    the mark appears while this one waits; a command that exits 0 under its lease marks it done
    before the lease is released. A failed or stopped command marks nothing: the next one runs.
    ``stdin`` false: the command reads /dev/null. ``on_taken(lease)`` runs once the lease is taken,
    before the command starts (an elected leader's announcement). The result tells how long the lease
    was waited for and held.
    """
    asked = time.monotonic()
    mutex_id = request.mutex_id
    request = request._replace(holder=leases.holder(shlex.join(argv))._replace(exec_mode=True))

    def done() -> OnceMarker | None:
        return leases.once_done(mutex_id, once) if once is not None else None

    marker = done()
    if marker is not None:
        return RunResult(0, marker.fence or 0, done=marker)
    try:
        lease = leases.acquire(request, on_wait=on_wait,
                               give_up=(lambda: done() is not None) if once is not None else None)
    except WaitAbandoned:
        marker = done()
        assert marker is not None  # what ended the wait
        return RunResult(0, marker.fence or 0, done=marker)
    marker = done()  # marked between the first look and the acquire
    if marker is not None:
        _release(leases, lease)
        return RunResult(0, marker.fence or 0, done=marker)
    taken = time.monotonic()
    if on_taken is not None:
        try:
            on_taken(lease)
        except BaseException:
            _release(leases, lease)
            raise
    result = _run(leases, lease, argv, once, stdin)
    return result._replace(waited_s=taken - asked, held_s=time.monotonic() - taken)


def _run(leases: Leases, lease: Lease, argv: Sequence[str], once: str | None, stdin: bool) -> RunResult:
    """The command under ``lease``, renewed, stopped before the lease could pass on, released after."""
    mutex_id = lease.mutex_id
    env = dict(os.environ, MUTEXCTL_MUTEX_ID=mutex_id, MUTEXCTL_NODE_ID=lease.node_id,
               MUTEXCTL_FENCE=str(lease.fence), MUTEXCTL_LOCK_HELD="1")
    group = CommandGroup(argv, env, stdin=stdin)
    grace = lease_stop_grace_s(lease.timeout_ms)
    keeper = LeaseKeeper(leases, lease, on_lost=lambda _reason: group.stop(grace), stop_margin_s=grace,
                         on_renewed=group.extend)
    if keeper.time_left() < MIN_RUN_S:
        _release(leases, lease)
        raise UsageError(f"a lease of {human_ms(lease.timeout_ms)} ends before a command could run under it: "
                         "mutexctl stops a command before its lease ends (a sixth of the lease to stop it, "
                         f"a tenth against clock drift), so it would have less than {human_ms(MIN_RUN_S * 1000)}",
                         remedy="longer-command-lease")
    with group.forwarding_signals():
        try:
            group.start(grace_s=grace, left_s=keeper.time_left(), keep_fds=guard_fds(leases, lease))
        except BaseException:
            _release(leases, lease)
            raise
        log.debug("running %s under %s (fence %s)", argv[0], mutex_id, lease.fence)
        keeper.start()
        status: int | None = None
        try:
            status = group.wait(may_resume=keeper.holds)
        finally:
            # Whatever ended the wait, the keeper stops; if the wait itself failed, the command may
            # still run, and must not outlive the renewals: its group goes with it.
            keeper.stop()
            group.finish(kill_rest=status is None or keeper.lost_reason is not None)
    if keeper.lost_reason is not None:
        return RunResult(status, lease.fence, lost=keeper.lost_reason, stopped=True, lost_kind=keeper.lost_kind)
    problem = None
    if once is not None and status == 0:  # done, recorded while the lease still holds
        try:
            leases.mark_once(keeper.lease, once, shlex.join(argv))
        except StoreError as exc:
            problem = f"the command succeeded, but it could not be marked done: {exc.message}"
    try:
        leases.release(mutex_id, token=lease.fence, kind=lease.kind)
    except NotOwnerError as exc:  # broken or expired before the command ended: it ran unprotected
        return RunResult(status, lease.fence, lost=f"{exc.message} when the command ended")
    except StoreError as exc:  # the lease is intact and will expire on its own
        return RunResult(status, lease.fence, release_error=exc.message)
    return RunResult(status, lease.fence, release_error=problem)


def guard_fds(leases: Leases, lease: Lease) -> tuple[int, ...]:
    """A store's host guard of this lease (SQLite's), for the watcher to hold while the command may run."""
    fds = getattr(leases.store, "guard", None)
    return tuple(fds.fds(lease.mutex_id, lease.fence)) if fds is not None else ()


def _release(leases: Leases, lease: Lease) -> None:
    with contextlib.suppress(StoreError, NotOwnerError):
        leases.release(lease.mutex_id, token=lease.fence, kind=lease.kind)
