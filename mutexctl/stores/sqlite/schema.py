"""Schema on SQLite: the items of each step (tables, indexes; an expiry is an index that keeps
pruning cheap, since the writers prune), the meta record, and the file's facts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from ...models import SchemaState, iso_ms, parse_iso
from ..common import newer_store_error
from ..steps import SCHEMA_VERSION, STEPS, Expiry, Index, Table
from .base import SQLiteBase, schema_record
from .files import TABLES
from .statements import Operation, row, run
from .times import SQL_NOW


class SQLiteSchema(SQLiteBase):
    def prepare_writes(self) -> SchemaState | None:
        """Refuse a store newer than this tool (once per store object). mutexId is the table's
        primary key: unique from the first write."""
        if self._prepared is None:
            state = self.schema_state()
            if state is not None and state.version > SCHEMA_VERSION:
                raise newer_store_error(state.version)
            self._prepared = (state,)
        return self._prepared[0]

    def schema_state(self) -> SchemaState | None:
        return self._run(schema_record(), write=False)

    def apply_schema_step(self, step: int) -> None:
        self._run(apply_step(step))

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        self._run(record_step(step, applied_by, tool_version, datetime.now(UTC)))
        self._prepared = None  # prepare_writes reads the new version next time

    def schema_problems(self) -> list[tuple[int, str]]:
        return []  # every item is in the table definitions or an index a step re-creates

    def store_time(self) -> datetime:
        return self._run(store_time(), write=False)

    def server_report(self) -> dict[str, str]:
        journal = self._run(journal_mode(), write=False)
        return {"engine": f"SQLite {sqlite3.sqlite_version}", "journal": journal, "path": str(self.path),
                "clock": "this host's boot clock" if self._boot != "wall-clock" else "this host's wall clock"}


def apply_step(step: int) -> Operation[None]:
    """Apply the items of step ``step``; every statement is ``IF NOT EXISTS``."""
    [items] = [s.items for s in STEPS if s.number == step]
    for item in items:
        if isinstance(item, Table):
            yield run(TABLES[item.name])
        elif isinstance(item, Index):
            unique = "UNIQUE " if item.unique else ""
            yield run(f"CREATE {unique}INDEX IF NOT EXISTS {item.table}_{item.name} "
                      f"ON {item.table} ({', '.join(item.fields)})")
        elif isinstance(item, Expiry):
            yield run(f"CREATE INDEX IF NOT EXISTS {item.table}_{item.field} ON {item.table} ({item.field})")


def record_step(step: int, applied_by: str, tool_version: str, now: datetime) -> Operation[None]:
    """Set the version to ``step`` and log it, in one transaction."""
    at = iso_ms(now)
    yield run(TABLES["meta"])
    yield run(TABLES["schema_steps"])
    yield run("INSERT INTO meta (id, version, appliedAt, appliedBy, toolVersion) VALUES ('schema', ?, ?, ?, ?) "
              "ON CONFLICT (id) DO UPDATE SET version = excluded.version, appliedAt = excluded.appliedAt, "
              "appliedBy = excluded.appliedBy, toolVersion = excluded.toolVersion",
              (step, at, applied_by, tool_version))
    yield run("INSERT INTO schema_steps (step, appliedAt, appliedBy) VALUES (?, ?, ?)", (step, at, applied_by))


def store_time() -> Operation[datetime]:
    [now] = yield row(f"SELECT {SQL_NOW}")
    return parse_iso(now)


def journal_mode() -> Operation[str]:
    [mode] = yield row("PRAGMA journal_mode")
    return str(mode)
