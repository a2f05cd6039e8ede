"""``status --watch``: a live view on a terminal (rich's live display, redrawn in place: held or
free, time left counting down between reads, holders, the newest events), one store read per
interval; piped, one snapshot per interval (a text block, or with --json one JSON line). Ctrl-C
ends it cleanly, exit 0."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..diagnose import liveness, why
from ..errors import StoreUnavailableError
from ..identity import host_name
from ..models import LeaseEvent, MutexState, Overview, human_ms, iso_ms
from ..redact import printable

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ..service import Service
    from .common import Invocation

RECENT = 8  # the newest events shown
TICK_S = 0.25  # how often the countdown is redrawn between reads
_STYLE = {"held": "yellow", "expired": "red", "free": "green", "duplicate": "magenta"}


class _Quit(BaseException):  # (not an Exception: a driver that catches those must not swallow it)
    """Ctrl-C while a read was in flight: the read is abandoned (nothing of it was shown)."""


class _Stop:
    """Ctrl-C ends the watch: between reads at the next tick, and during a read at once (a store that
    answers slowly, a busy server, must not keep the watch on screen for its socket timeout)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reading = False

    def on_signal(self, _signum: int, _frame: object) -> None:
        self.event.set()
        if self.reading:
            raise _Quit

    def read(self, svc: Service, patterns: Sequence[str], held_only: bool) -> Overview:
        self.reading = True
        try:
            return svc.overview(patterns=patterns, held_only=held_only, forced_limit=0, recent=RECENT)
        finally:
            self.reading = False


def watch(inv: Invocation, svc: Service, patterns: Sequence[str], held_only: bool, interval_s: float) -> int:
    stop = _Stop()
    previous = signal.signal(signal.SIGINT, stop.on_signal)
    try:
        if sys.stdout.isatty() and not inv.as_json:
            _live(svc, patterns, held_only, interval_s, stop)
        else:
            _snapshots(inv, svc, patterns, held_only, interval_s, stop)
    except _Quit:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0


def _snapshots(inv: Invocation, svc: Service, patterns: Sequence[str], held_only: bool, interval_s: float,
               stop: _Stop) -> None:
    from .documents import event_doc, state_doc
    from .views import render_status

    host = host_name()
    while not stop.event.is_set():
        started = time.monotonic()
        try:
            view = stop.read(svc, patterns, held_only)
        except StoreUnavailableError as exc:
            inv.out.note(f"store unavailable, trying again in {human_ms(interval_s * 1000)}: {exc.message}")
        else:
            if inv.as_json:
                alive = liveness(host)
                inv.out.doc({"ok": True, "at": iso_ms(view.store_now),
                             "mutexes": [state_doc(s, why(s, alive=alive)) for s in view.states],
                             "events": [event_doc(e) for e in view.events]})
            else:
                inv.out.data(f"# at {iso_ms(view.store_now)} (store)")
                render_status(view.states, ())
                inv.out.data("")
            sys.stdout.flush()
        stop.event.wait(max(0.0, interval_s - (time.monotonic() - started)))


def _live(svc: Service, patterns: Sequence[str], held_only: bool, interval_s: float, stop: _Stop) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    with Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False) as live:
        while not stop.event.is_set():
            started = time.monotonic()
            problem = None
            try:
                read = stop.read(svc, patterns, held_only)
                view: Overview | None = read._replace(states=tuple(sorted(read.states, key=_first)))  # once a read
            except StoreUnavailableError as exc:
                view, problem = None, exc.message
            while not stop.event.is_set():
                elapsed = time.monotonic() - started
                live.update(_screen(view, problem, elapsed, interval_s, svc.store.url, console.size.height),
                            refresh=True)
                if elapsed >= interval_s:
                    break
                stop.event.wait(min(TICK_S, interval_s - elapsed))


def _screen(view: Overview | None, problem: str | None, elapsed_s: float, interval_s: float,
            url: str, rows: int) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if view is None:
        return Text(f"store unavailable, trying again every {human_ms(interval_s * 1000)}: {problem}", style="red")
    alive = liveness(host_name())
    table = Table(box=None, pad_edge=False, header_style="bold", expand=True)
    for title in ("MUTEX", "STATE", "NODE", "HOST:PID", "LEFT", "FENCE", "WAITING", "WHY"):
        # A row per line (the count below holds): WHY takes what the others leave, cut with an ellipsis.
        table.add_column(title, no_wrap=True, overflow="ellipsis", ratio=1 if title == "WHY" else None)
    states = view.states  # (held first: see _first)
    room = max(rows - len(view.events) - 8, 3)  # what fits above the recent events and the footer
    shown, hidden = (states, []) if len(states) <= room else (states[:room - 1], states[room - 1:])
    for read in shown:
        state = aged(read, elapsed_s)  # the time left and the waits, counted on between reads: one clock
        table.add_row(printable(state.mutex_id), Text(state.state, style=_STYLE.get(state.state, "")),
                      printable(state.taken_by or "-") if state.taken else "-", _where(state),
                      _left(state), str(state.fence), _waiting(state), printable(why(state, alive=alive)))
    if hidden:
        kinds = ", ".join(f"{count} {kind}" for kind, count in Counter(s.state for s in hidden).items())
        table.add_row(f"… {len(hidden)} more ({kinds})", "", "", "", "", "", "", "'mutexctl status' lists them all")
    if not view.states:
        table.add_row("(no mutex)", "", "", "", "", "", "", "")
    events = Table(box=None, pad_edge=False, header_style="bold", title="recent events", title_justify="left",
                   expand=True)
    for title in ("TIME (STORE)", "MUTEX", "EVENT", "NODE", "FENCE", "DETAILS"):
        events.add_column(title, no_wrap=True, overflow="ellipsis", ratio=1 if title == "DETAILS" else None)
    for event in view.events:
        events.add_row(iso_ms(event.at), printable(event.mutex_id), event.kind, printable(event.node or "-"),
                       "-" if event.fence is None else str(event.fence), _details(event))
    footer = Text(f"store {url} · read at {iso_ms(view.store_now)} · every {human_ms(interval_s * 1000)} · "
                  f"Ctrl-C quits", style="dim", no_wrap=True, overflow="ellipsis")
    return Group(table, Text(""), events, footer)


def _where(state: MutexState) -> str:
    if not state.taken or state.holder is None:
        return "-"
    return f"{printable(state.holder.host)}:{state.holder.pid}"


def _first(state: MutexState) -> tuple[int, str]:
    """Held ones first, then those waited for, expired, free: what on-call looks for fits the screen."""
    rank = 0 if state.state == "held" else 1 if state.waiters else 2 if state.state in ("expired", "duplicate") else 3
    return rank, state.mutex_id


def aged(state: MutexState, elapsed_s: float) -> MutexState:
    """The state as read, ``elapsed_s`` later: time left counted down (never to 0 before a read says
    it ended: it may have been renewed), waits counted up."""
    ms = round(elapsed_s * 1000)
    if not ms:
        return state

    def left(remaining: int) -> int:
        return max(ENDING_MS, remaining - ms)

    return state._replace(
        remaining_ms=None if state.remaining_ms is None or state.state != "held" else left(state.remaining_ms),
        slots=tuple(s._replace(remaining_ms=left(s.remaining_ms)) for s in state.slots),
        waiters=tuple(w._replace(waited_ms=w.waited_ms + ms) for w in state.waiters))


ENDING_MS = 1  # what is left of a lease past its end by this host's count, until a read tells


def _left(state: MutexState) -> str:
    remaining = min((s.remaining_ms for s in state.slots), default=state.remaining_ms) if state.slots \
        else state.remaining_ms
    if state.state != "held" or remaining is None:
        return "-"
    return human_ms(remaining) if remaining > ENDING_MS else "ending"


def _waiting(state: MutexState) -> str:
    """How many wait, and the longest wait so far."""
    if not state.waiters:
        return "-"
    return f"{len(state.waiters)} (up to {human_ms(max(w.waited_ms for w in state.waiters))})"


def _details(event: LeaseEvent) -> str:
    parts: list[Any] = []
    if event.previous_holder:
        parts.append(f"from {event.previous_holder}")
    if event.held_ms is not None:
        parts.append(f"held {human_ms(event.held_ms)}")
    if event.waited_ms:
        parts.append(f"waited {human_ms(event.waited_ms)}")
    if event.reason:
        parts.append(f"reason: {event.reason}")
    return printable("; ".join(str(p) for p in parts))


