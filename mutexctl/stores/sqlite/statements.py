"""SQLite operations as data: an operation is a generator that yields each statement it needs (a Sql:
the text, its parameters, and what of the result it wants) and gets that back, so that the SQL and
every row's interpretation are written once, without I/O; the times it works with (the boot clock,
the wall clock) are its inputs. An executor only runs the statements inside one transaction:
``SQLiteBase._run`` on the connection; another executor (a thread for an event loop, a test's record
and replay) drives the same generators unchanged.

Wanted: ``row`` the first row or None; ``rows`` a list of rows; ``changed`` the number of rows the
statement changed; ``none`` nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]


class Now(NamedTuple):
    """The instant an operation works at, read once before it runs: the lease clock (``ns``, this
    host's boot clock) and the wall clock (``wall``, for the times stored for people to read)."""

    ns: int
    wall: datetime


class Sql(NamedTuple):
    text: str
    params: Params
    want: str  # row, rows, changed, none


# An operation: yields statements, receives what each gave, returns its result (or raises a typed error).
Operation = Generator[Sql, Any, T]


def row(text: str, params: Params = ()) -> Sql:
    return Sql(text, params, "row")


def rows(text: str, params: Params = ()) -> Sql:
    return Sql(text, params, "rows")


def changed(text: str, params: Params = ()) -> Sql:
    return Sql(text, params, "changed")


def run(text: str, params: Params = ()) -> Sql:
    return Sql(text, params, "none")


def answer(db: sqlite3.Connection, statement: Sql) -> Any:
    """Run one statement on ``db`` and give back what it wants."""
    cursor = db.execute(statement.text, statement.params)
    if statement.want == "row":
        return cursor.fetchone()
    if statement.want == "rows":
        return cursor.fetchall()
    if statement.want == "changed":
        return cursor.rowcount
    return None


def run_sync(op: Operation[T], db: sqlite3.Connection) -> T:
    """Drive ``op`` on ``db`` (the caller holds the transaction), statement by statement."""
    try:
        statement = next(op)
        while True:
            statement = op.send(answer(db, statement))
    except StopIteration as done:
        result: T = done.value
        return result
