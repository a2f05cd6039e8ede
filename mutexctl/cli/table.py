"""The status table: plain columns piped (every value whole, for scripts), and on a terminal one line
per mutex at the terminal's width — long cells cut with "…", the least needed columns dropped when
even that does not fit — coloured unless NO_COLOR. Plain string work: thousands of rows render in
milliseconds."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from ..models import EXCLUSIVE, SEMAPHORE, MutexState, human_ms, iso_ms
from ..redact import printable


class Column(NamedTuple):
    title: str
    least: int  # the narrowest it is cut to
    drop: int  # dropped in this order when the table is still too wide (0: never)


COLUMNS = (Column("MUTEX", 10, 0), Column("STATE", 7, 0), Column("NODE", 6, 0), Column("HOST", 6, 3),
           Column("PID", 5, 2), Column("COMMAND", 7, 4), Column("TAKEN AT", 9, 0), Column("LEFT", 6, 0),
           Column("TIMEOUT", 7, 1), Column("FENCE", 5, 0))
SHRINK_FIRST = ("COMMAND", "HOST", "NODE", "MUTEX", "TAKEN AT")
GAP = "  "
_COLOURS = {"held": "33", "expired": "31", "free": "32", "duplicate": "35"}


def rows(states: Sequence[MutexState], *, compact_times: bool) -> list[tuple[str, tuple[str, ...]]]:
    """One row per mutex (its state, for colour, and its cells), and under a semaphore or shared lock
    one per holder; user-written text with control characters escaped."""
    today = datetime.now(UTC).date()

    def when(moment: datetime | None) -> str:
        return "-" if moment is None else _time(moment, today) if compact_times else iso_ms(moment)

    out: list[tuple[str, tuple[str, ...]]] = []
    for s in states:
        if s.kind != EXCLUSIVE:
            out.append((s.state, (printable(s.mutex_id), s.shown_state, "-", "-", "-", "-", "-",
                                  human_ms(s.remaining_ms) if s.slots and s.remaining_ms is not None else "-",
                                  "-", str(s.fence))))
            for slot in s.slots:
                h = slot.holder
                out.append(("held", ("  ↳", "slot" if s.kind == SEMAPHORE else "shared", printable(slot.node),
                                     printable(h.host) if h else "-", str(h.pid) if h else "-",
                                     printable(h.command) if h else "-", when(slot.since), human_ms(slot.remaining_ms),
                                     human_ms(slot.timeout_ms) if slot.timeout_ms is not None else "-",
                                     str(slot.fence))))
            continue
        held = s.taken
        state = s.state
        h = s.holder if held else None
        command = printable(h.command) if h else ("(another service)" if s.foreign else "-")
        left = "-"
        if state == "held":
            left = human_ms(s.remaining_ms) if s.remaining_ms is not None else "unknown"
        out.append((state, (printable(s.mutex_id), state, printable(s.taken_by or "-") if held else "-",
                              printable(h.host) if h else "-", str(h.pid) if h else "-", command,
                              when(s.since or s.taken_at) if held else "-", left,
                              human_ms(s.timeout_ms) if s.timeout_ms is not None else "-",
                              "-" if s.foreign else str(s.fence))))
        for place, w in enumerate(s.waiters, 1):
            out.append(("waiting", ("  ↳", "waiting", printable(w.node), printable(w.host or "-"),
                                    "-" if w.pid is None else str(w.pid), f"waiting {human_ms(w.waited_ms)}, "
                                    f"{_ordinal(place)} in line", when(w.since), "-", "-", "-")))
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def render(states: Sequence[MutexState]) -> list[str]:
    """The table's lines, for stdout (a terminal, or not)."""
    terminal = sys.stdout.isatty()
    coloured = rows(states, compact_times=terminal)
    table = [row for _, row in coloured]
    width = shutil.get_terminal_size((80, 24)).columns if terminal else None
    shown, widths = layout(table, width)
    colour = terminal and "NO_COLOR" not in os.environ
    lines = [GAP.join(COLUMNS[i].title.ljust(widths[i]) for i in shown).rstrip()]
    if colour:
        lines[0] = f"\x1b[1m{lines[0]}\x1b[0m"
    if width is None:  # piped: every cell whole, in columns as wide as their widest cell
        line = GAP.join(f"%-{w}s" for w in widths)  # (one format for every row: the fastest way to pad them)
        lines += [(line % row).rstrip() for row in table]
        return lines
    for state, row in coloured:
        cells = [_cut(row[i], widths[i]).ljust(widths[i]) for i in shown]
        if colour and state in _COLOURS:
            cells[1] = f"\x1b[{_COLOURS[state]}m{cells[1]}\x1b[0m"
        lines.append(GAP.join(cells).rstrip())
    return lines


def layout(table: list[tuple[str, ...]], width: int | None) -> tuple[list[int], list[int]]:
    """(the columns shown, every column's width): natural widths, or fitted to ``width``."""
    widths = [max(len(c.title), max(map(len, cells), default=0))
              for c, cells in zip(COLUMNS, zip(*table, strict=True) if table else [()] * len(COLUMNS), strict=True)]
    shown = list(range(len(COLUMNS)))
    if width is None:
        return shown, widths

    def total() -> int:
        return sum(widths[i] for i in shown) + len(GAP) * (len(shown) - 1)

    for title in SHRINK_FIRST:
        i = next(n for n, c in enumerate(COLUMNS) if c.title == title)
        excess = total() - width
        if excess <= 0:
            return shown, widths
        widths[i] = max(COLUMNS[i].least, widths[i] - excess)
    for rank in sorted({c.drop for c in COLUMNS if c.drop}):
        if total() <= width:
            break
        shown = [i for i in shown if COLUMNS[i].drop != rank]
    return shown, widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _time(moment: datetime, today: object) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%H:%M:%SZ") if moment.date() == today else moment.strftime("%Y-%m-%d")
