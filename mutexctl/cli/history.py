"""``history``: who held which mutex, when, for how long, who waited, what was forced or lost —
newest first, with a summary line (count, longest hold, longest wait)."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

from typing import Annotated, Any, Optional

import typer

from ..history import MAX_LIMIT, Summary, summarize
from ..inputs import validate_mutex_id, validate_node_id
from ..models import LeaseEvent, human_ms, iso_ms
from ..redact import printable
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation
from .completion import mutex_names
from .documents import event_doc

HISTORY = typer.Typer(**APP_SETTINGS)
_TITLES = ("TIME (STORE)", "MUTEX", "EVENT", "NODE", "FENCE", "WAITED", "HELD", "DETAILS")


@HISTORY.command()
def history(
    ctx: typer.Context,
    patterns: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME|PATTERN]...", help="Only these mutexes: names, or globs such as 'deploy-*'.",
        show_default=False, autocompletion=mutex_names)] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="DURATION", help="Only the last DURATION (e.g. 2h, 30m, 1d), on the store's clock.",
        show_default=False)] = None,
    node: Annotated[Optional[str], typer.Option(
        "--node", metavar="NODE", help="Only what NODE did, or what was taken from it.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="K", help="At most K events (newest).")] = 50,
    limit_n: Annotated[Optional[int], typer.Option("-n", hidden=True, help="Deprecated spelling of --limit.")] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Show the lease history, newest first: acquires, take-overs of expired leases, releases, forced releases, losses,
    run-once markers cleared.

    Each event has the store's time, the node, host, pid and (masked) command, the fence, how long
    the acquirer waited and how long the lease was held. A take-over names the previous holder and
    how late after the end of its lease it was taken over. 'refused' is a release or renewal by a
    node that no longer held the lease. Kept for history_retention (default 30d).
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    if limit_n is not None:
        inv.out.note("mutexctl: warning: 'history -n' is deprecated: use --limit (-n is --nonblock on acquire)")
        limit = limit_n
    if not 1 <= limit <= MAX_LIMIT:
        from ..errors import UsageError

        raise UsageError(f"--limit {limit} is out of range", hint=f"use 1-{MAX_LIMIT}")
    for pattern in patterns or ():
        validate_mutex_id(pattern)
    if node is not None:
        validate_node_id(node, what="--node")
    with inv.service(reading=True) as svc:
        found = svc.history(patterns or (), since=since, node=node, limit=limit)
        url = svc.store.url

    summary = summarize(found)
    if inv.as_json:
        hold, wait = summary.longest_hold, summary.longest_wait
        inv.out.doc({"ok": True, "store": url, "events": [event_doc(e) for e in found],
                     "summary": {"count": summary.total, "longest_hold": None if hold is None else event_doc(hold),
                                 "longest_wait": None if wait is None else event_doc(wait)}})
        return exit_codes.SUCCESS
    table = [_TITLES] + [_row(e) for e in found]
    widths = [max(len(row[i]) for row in table) for i in range(len(_TITLES) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        inv.out.data("  ".join(cells).rstrip())
    inv.out.data(f"# store: {url}")
    inv.out.data("# " + _summary_line(summary, limit))
    return exit_codes.SUCCESS


def _row(event: LeaseEvent) -> tuple[str, ...]:
    def text(value: Any) -> str:
        return "-" if value is None else printable(str(value))

    def ms(value: int | None) -> str:
        return "-" if value is None else human_ms(value)

    details = []
    if event.previous_holder is not None:
        details.append(f"from {printable(event.previous_holder)}"
                       + (f" (fence {event.previous_fence})" if event.previous_fence is not None else ""))
    if event.late_ms is not None:
        details.append(f"{human_ms(max(0, event.late_ms))} after its lease ended")
    if event.reason:
        details.append(f"reason: {printable(event.reason)}")
    if event.slot:
        details.append(event.slot)
    if event.holder is not None:
        details.append(f"{printable(event.holder.host)}:{event.holder.pid}"
                       + (f" {printable(event.holder.command)}" if event.holder.command else ""))
    return (iso_ms(event.at), printable(event.mutex_id), event.kind, text(event.node), text(event.fence),
            ms(event.waited_ms), ms(event.held_ms), "; ".join(details))


def _summary_line(summary: Summary, limit: int) -> str:
    count = f"{summary.total} event{'s' if summary.total != 1 else ''}"
    if summary.total == limit:
        count += f" (the newest {limit}: --limit shows more)"
    parts = [count]
    hold, wait = summary.longest_hold, summary.longest_wait
    if hold is not None:
        parts.append(f"longest hold {human_ms(hold.held_ms or 0)} ({printable(hold.mutex_id)}, "
                     f"{printable((hold.previous_holder if hold.kind == 'forced' else hold.node) or '-')}, "
                     f"ended {iso_ms(hold.at)})")
    if wait is not None:
        parts.append(f"longest wait {human_ms(wait.waited_ms or 0)} ({printable(wait.mutex_id)}, "
                     f"{printable(wait.node or '-')}, at {iso_ms(wait.at)})")
    return "; ".join(parts)
