"""The lease clock: where local lease deadlines are kept.

It is CLOCK_BOOTTIME where there is one: unlike the monotonic clock it runs on while the machine is
suspended, as the store's clock does (a server's, or CLOCK_BOOTTIME for SQLite), so a lease that ran
out during a suspend is seen as gone.
"""

from __future__ import annotations

import time

_LEASE_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)


def lease_clock() -> float:
    """Seconds on the lease clock (CLOCK_BOOTTIME, else the monotonic clock)."""
    return time.clock_gettime(_LEASE_CLOCK) if _LEASE_CLOCK is not None else time.monotonic()
