"""Schema on SQLite: the items of each step (tables, indexes; an expiry is an index that keeps
pruning cheap, since the writers prune), the meta record, and the file's facts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from ...models import SchemaState, iso_ms, parse_iso
from ..common import newer_store_error
from ..steps import SCHEMA_VERSION, STEPS, Expiry, Index, Table
from .base import SQLiteBase, read_schema
from .files import TABLES
from .times import SQL_NOW


class SQLiteSchema(SQLiteBase):
    def prepare_writes(self) -> SchemaState | None:
        """Refuse a store newer than this tool (once per store object). mutexId is the table's
        primary key: unique from the first write."""
        if self._prepared is None:
            with self._transaction(write=False) as db:
                state = read_schema(db)
            if state is not None and state.version > SCHEMA_VERSION:
                raise newer_store_error(state.version)
            self._prepared = (state,)
        return self._prepared[0]

    def schema_state(self) -> SchemaState | None:
        with self._transaction(write=False) as db:
            return read_schema(db)

    def apply_schema_step(self, step: int) -> None:
        """Apply the items of step ``step``; every statement is ``IF NOT EXISTS``."""
        [items] = [s.items for s in STEPS if s.number == step]
        with self._transaction() as db:
            for item in items:
                if isinstance(item, Table):
                    db.execute(TABLES[item.name])
                elif isinstance(item, Index):
                    unique = "UNIQUE " if item.unique else ""
                    db.execute(f"CREATE {unique}INDEX IF NOT EXISTS {item.table}_{item.name} "
                               f"ON {item.table} ({', '.join(item.fields)})")
                elif isinstance(item, Expiry):
                    db.execute(f"CREATE INDEX IF NOT EXISTS {item.table}_{item.field} ON {item.table} ({item.field})")

    def record_schema_step(self, step: int, applied_by: str, tool_version: str) -> None:
        """Set the version to ``step`` and log it, in one transaction."""
        now = iso_ms(datetime.now(UTC))
        with self._transaction() as db:
            db.execute(TABLES["meta"])
            db.execute(TABLES["schema_steps"])
            db.execute("INSERT INTO meta (id, version, appliedAt, appliedBy, toolVersion) "
                       "VALUES ('schema', ?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET version = excluded.version, appliedAt = excluded.appliedAt, "
                       "appliedBy = excluded.appliedBy, toolVersion = excluded.toolVersion",
                       (step, now, applied_by, tool_version))
            db.execute("INSERT INTO schema_steps (step, appliedAt, appliedBy) VALUES (?, ?, ?)",
                       (step, now, applied_by))
        self._prepared = None  # prepare_writes reads the new version next time

    def schema_problems(self) -> list[tuple[int, str]]:
        return []  # every item is in the table definitions or an index a step re-creates

    def store_time(self) -> datetime:
        with self._transaction(write=False) as db:
            return parse_iso(db.execute(f"SELECT {SQL_NOW}").fetchone()[0])

    def server_report(self) -> dict[str, str]:
        with self._transaction(write=False) as db:
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        return {"engine": f"SQLite {sqlite3.sqlite_version}", "journal": journal, "path": str(self.path),
                "clock": "this host's boot clock" if self._boot != "wall-clock" else "this host's wall clock"}
