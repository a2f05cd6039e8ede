"""The embedded store: one SQLite file shared by the processes of one host.

Expiry is judged on ``CLOCK_BOOTTIME`` tagged with the kernel's boot id: it never jumps with NTP or
an operator's ``date -s``, keeps counting through suspend, and a lease written in an earlier boot
(a different boot id) counts as expired. Every method is one ``BEGIN IMMEDIATE`` transaction, so
the compare-and-set cannot interleave with another process (SQLite holds the write lock).

This package is the only importer of sqlite3. The store is its parts side by side, each a subclass
of ``base.SQLiteBase`` (the connection, transactions, error translation, a mutex's state) and none
importing another (an import-linter contract): ``leases`` (exclusive), ``queue`` (waiters),
``slots`` (semaphores, shared holds), ``once`` (run-once markers), ``leaders`` (elections),
``history``, ``status`` (what on-call reads), ``schema``, ``log`` (the broadcast log). What two
parts share is a module of its own: ``exclusive`` (the take that a try and a waiter's turn both
make), ``rows``, ``events``, ``waiters``, ``files``, ``guard``, ``times``.
"""

from __future__ import annotations

from .history import SQLiteHistory
from .leaders import SQLiteLeaders
from .leases import SQLiteLeases
from .log import SQLiteLog
from .once import SQLiteOnce
from .queue import SQLiteQueue
from .schema import SQLiteSchema
from .slots import SQLiteSlots
from .status import SQLiteStatus


class SQLiteStore(SQLiteLeases, SQLiteQueue, SQLiteSlots, SQLiteOnce, SQLiteLeaders, SQLiteHistory, SQLiteStatus,
                  SQLiteSchema, SQLiteLog):
    """``sqlite:///abs/path.db`` or ``sqlite:relative/path.db``; the file is created on first use."""


__all__ = ["SQLiteStore"]
