"""``acquire NAME --hold-for PID``: a lease held for another process's lifetime (a shell's, as flock's
``( flock -n 9 || exit 1; … ) 9>file`` holds its lock while the subshell runs). A detached keeper
process takes the lease, tells the ``mutexctl`` that started it how that went, then renews the lease
until PID exits and releases it then. ``release --token`` (or a forced release) ends it early: the
keeper's next renewal is refused and it leaves."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

from ..errors import MutexctlError, UsageError
from ..keeper import LeaseKeeper
from ..leases import Leases
from ..logs import logger
from ..models import Lease, LeaseRequest

log = logger(__name__)

POLL_S = 1.0  # how often the keeper looks at its lease's loss when PID gives no news


def watch_process(pid: int) -> int:
    """A descriptor that becomes readable when process ``pid`` exits (Linux's pidfd)."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise UsageError(f"there is no process {pid} to hold the lease for", param="hold-for") from None
    except (AttributeError, OSError) as exc:  # not Linux 5.3 or newer
        raise UsageError(f"cannot watch process {pid} here: {exc}", param="hold-for") from None


def hold_for(leases: Leases, request: LeaseRequest, pid: int, report: Callable[[Lease | MutexctlError], None]) -> int:
    """In the keeper: take the lease (waiting as ``request`` says), ``report`` it or the error, then
    renew it until ``pid`` exits and release it. Returns 0, or 75 when the lease was lost meanwhile."""
    try:
        watched = watch_process(pid)
        lease = leases.acquire(request)
    except MutexctlError as exc:
        report(exc)
        return 1
    report(lease)
    lost = threading.Event()
    keeper = LeaseKeeper(leases, lease, on_lost=lambda _reason: lost.set(), stop_margin_s=0.0)
    keeper.start()
    try:
        while not lost.is_set() and not select.select([watched], [], [], POLL_S)[0]:
            pass
    finally:
        keeper.stop()
        os.close(watched)
    if lost.is_set():
        log.info("lease on %s (fence %s) ended before process %s: %s", lease.mutex_id, lease.fence, pid,
                 keeper.lost_reason)
        return 75
    try:
        leases.release(lease.mutex_id, token=keeper.lease.fence, kind=lease.kind, reason=f"process {pid} exited")
    except MutexctlError as exc:  # (it ends at its expiry)
        log.info("could not release %s after process %s exited: %s", lease.mutex_id, pid, exc)
    return 0
