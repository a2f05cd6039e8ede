"""The embedded store: one SQLite file shared by the processes of one host.

Expiry is judged on ``CLOCK_BOOTTIME`` tagged with the kernel's boot id: it never jumps with NTP or
an operator's ``date -s``, keeps counting through suspend, and a lease written in an earlier boot
(a different boot id) counts as expired. Every method is one ``BEGIN IMMEDIATE`` transaction, so
the compare-and-set cannot interleave with another process (SQLite holds the write lock).

This package is the only importer of sqlite3. Its parts: ``connection`` (the file, transactions,
the clock), ``leases``, ``schema``, ``log`` (the broadcast log).
"""

from __future__ import annotations

from .log import SQLiteLog


class SQLiteStore(SQLiteLog):
    """``sqlite:///abs/path.db`` or ``sqlite:relative/path.db``; the file is created on first use."""


__all__ = ["SQLiteStore"]
