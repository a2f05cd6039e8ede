"""Views of the store for people and scripts: the status table (rich only on a terminal), its JSON
documents, and init-schema's report."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..config import host_name
from ..diagnose import why
from ..models import ForcedRelease, InitResult, MutexState, human_ms, iso_ms
from ..schema import SCHEMA_VERSION, title
from .output import Output


def state_doc(state: MutexState, this_host: str) -> dict[str, Any]:
    """A mutex for --json. Holder fields describe the current lease only: null when free (the last
    holder is ``last_taken_by``) and for another service's lease (``foreign``)."""
    holder, taken = state.holder if state.taken else None, state.taken
    return {
        "mutex": state.mutex_id, "state": state.state, "taken": taken,
        "taken_by": state.taken_by if taken else None,
        "last_taken_by": None if taken else state.taken_by,
        "foreign": state.foreign,
        "host": holder.host if holder else None, "pid": holder.pid if holder else None,
        "user": holder.user if holder else None, "command": holder.command if holder else None,
        "taken_at": iso_ms(state.taken_at) if taken and state.taken_at else None,
        "since": iso_ms(state.since) if taken and state.since else None,
        "expires_at": iso_ms(state.expires_at) if taken and state.expires_at else None,
        "remaining_ms": state.remaining_ms, "timeout_ms": state.timeout_ms, "fence": state.fence,
        "problem": state.problem, "documents": state.copies,
        "why": why(state, this_host),
    }


def forced_doc(record: ForcedRelease) -> dict[str, Any]:
    return {"mutex": record.mutex_id, "at": iso_ms(record.at), "by_node": record.by_node, "by_user": record.by_user,
            "by_host": record.by_host, "reason": record.reason, "previous_holder": record.previous_holder,
            "previous_fence": record.previous_fence}


_COLUMNS = ("MUTEX", "STATE", "NODE", "HOST", "PID", "COMMAND", "TAKEN AT", "LEFT", "TIMEOUT", "FENCE")


def status_rows(states: Sequence[MutexState]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for s in states:
        held = s.taken
        h = s.holder if held else None
        command = _clip(h.command, 40) if h else ("(another service)" if s.foreign else "-")
        left = "-"
        if s.state == "held":
            left = human_ms(s.remaining_ms) if s.remaining_ms is not None else "unknown"
        rows.append((s.mutex_id, s.state, (s.taken_by or "-") if held else "-", h.host if h else "-",
                     str(h.pid) if h else "-", command, _when(s.since or s.taken_at) if held else "-", left,
                     human_ms(s.timeout_ms) if s.timeout_ms is not None else "-",
                     "-" if s.foreign else str(s.fence)))
    return rows


def render_status(states: Sequence[MutexState], forced: Sequence[ForcedRelease]) -> None:
    this_host = host_name()
    rows = status_rows(states)
    if sys.stdout.isatty():
        _render_rich(states, rows, forced, this_host)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    for state in states:
        if state.state != "free":
            print(f"# {state.mutex_id}: {why(state, this_host)}")
    for record in forced:
        print(f"# forced release of {record.mutex_id} at {iso_ms(record.at)} by {record.by_user}@{record.by_host} "
              f"({record.by_node}): {record.reason} "
              f"[was {record.previous_holder}, fence {_fence(record.previous_fence)}]")


def _render_rich(states: Sequence[MutexState], rows: list[tuple[str, ...]],
                 forced: Sequence[ForcedRelease], this_host: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(no_color="NO_COLOR" in os.environ)
    table = Table(*_COLUMNS, box=None, header_style="bold")
    style = {"held": "yellow", "expired": "red", "free": "green"}
    for state, row in zip(states, rows, strict=True):
        table.add_row(*(escape(cell) for cell in row), style=style.get(state.state))
    console.print(table)
    for state in states:
        if state.state != "free":
            console.print(f"[bold]{escape(state.mutex_id)}[/]: {escape(why(state, this_host))}", highlight=False)
    for record in forced:
        console.print(f"forced release of [bold]{escape(record.mutex_id)}[/] at {iso_ms(record.at)} by "
                      f"{escape(record.by_user)}@{escape(record.by_host)} ({escape(record.by_node)}): "
                      f"{escape(record.reason)} [dim](was {escape(record.previous_holder or '-')}, "
                      f"fence {_fence(record.previous_fence)})[/]", highlight=False)


def render_init(out: Output, store_url: str, result: InitResult, *, dry_run: bool) -> None:
    """init-schema's report: the server's facts, then what was (or would be) applied."""
    if out.as_json:
        retention = None
        if result.retention is not None:
            retention = dict(zip(("before_s", "after_s"), result.retention, strict=True))
        out.doc({"ok": True, "store": store_url, "server": result.server, "version_before": result.version_before,
                 "version": result.version, "tool_version": SCHEMA_VERSION, "applied": list(result.applied),
                 "pending": list(result.pending), "log_retention_change": retention, "dry_run": dry_run})
        return
    out.data(f"store: {store_url}")
    for key, value in result.server.items():
        out.data(f"  {key.replace('_', ' ')}: {value}")
    change = None
    if result.retention is not None:
        before, after = (human_ms(seconds * 1000) for seconds in result.retention)
        change = f"broadcast log retention {before} -> {after} (log_retention)"
    if dry_run:
        if not result.pending and change is None:
            out.data(f"schema version {result.version} is up to date; nothing would change")
        for number in result.pending:
            out.data(f"would apply step {number}: {title(number)}")
        if change is not None:
            out.data(f"would change {change}")
        return
    for number in result.applied:
        out.data(f"applied step {number}: {title(number)}")
    if result.applied:
        out.data(f"schema version {result.version_before} -> {result.version}")
    else:
        out.data(f"schema version {result.version} is up to date" + ("" if change else "; nothing to do"))
    if change is not None:
        out.data(f"changed {change}")


def _fence(fence: int | None) -> str:
    return "-" if fence is None else str(fence)


def _clip(text: str | None, width: int) -> str:
    if not text:
        return "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(moment: datetime | None) -> str:
    return iso_ms(moment) if moment else "-"
