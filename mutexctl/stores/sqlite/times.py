"""Times on the SQLite store: the stamp every writer takes from SQLite itself, and the clock leases
are judged on (CLOCK_BOOTTIME tagged with the boot id)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

# The time every writer stamps, read by SQLite itself: one clock for all the processes sharing the
# file, whatever a caller's own clock says (same form as iso_ms).
SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def sql_ago(seconds: float) -> str:
    """SQL for the store's now minus ``seconds``, in SQL_NOW's form (so it compares as text)."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{float(seconds):.3f} seconds')"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: fall back to the wall clock, which a reboot does not reset
        return "wall-clock"


def boot_clock_ns(boot: str) -> Callable[[], int]:
    """The clock leases are judged on: CLOCK_BOOTTIME (never jumps with NTP or ``date -s``, counts
    a suspend), tagged with the boot id; the wall clock where there is no boot id."""
    if boot != "wall-clock" and hasattr(time, "CLOCK_BOOTTIME"):
        return lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return time.time_ns
