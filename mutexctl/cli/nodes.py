"""``nodes``: who listens for broadcasts — each registered node, its last heartbeat on the store's
clock, and its place in the log."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

from typing import Annotated, Any, Optional

import typer

from ..models import human_ms, iso_ms
from ..redact import printable
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation
from .documents import node_doc

NODES = typer.Typer(**APP_SETTINGS)
_TITLES = ("CHANNEL", "NODE", "HOST", "PID", "LAST SEEN", "LIVE", "POSITION", "LATEST", "BEHIND")


@NODES.command()
def nodes(
    ctx: typer.Context,
    channel: Annotated[Optional[str], typer.Option("--channel", "-c", metavar="NAME",
                                                   help="Only this channel (default: every channel).",
                                                   show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """List the nodes registered as listeners: last heartbeat (store's clock), live or not, and place in the log.

    A node is live while its heartbeat (every 10 s) is at most 30 s old: broadcast expects an answer
    from live nodes only; a listener that stopped by itself (--once, a signal) shows 'left' once its
    heartbeat is old. POSITION is the last message number the node has dealt with (saved by the
    listener; before it saved one, the number it first registered at); BEHIND is how many numbers
    of the log it has still to read.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    with inv.service(reading=True) as svc:
        now, found = svc.nodes(channel)
        url = svc.store.url
    docs = [node_doc(n, now) for n in found]
    if inv.as_json:
        inv.out.doc({"ok": True, "store": url, "now": iso_ms(now), "nodes": docs})
        return exit_codes.SUCCESS
    table = [_TITLES] + [_row(d) for d in docs]
    widths = [max(len(row[i]) for row in table) for i in range(len(_TITLES))]
    for row in table:
        inv.out.data("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    inv.out.data(f"# store: {url}")
    if not docs:
        inv.out.data("# no node has listened" + (f" on channel {channel}" if channel else "") +
                     " (start one with: mutexctl listen)")
    return exit_codes.SUCCESS


def _row(doc: dict[str, Any]) -> tuple[str, ...]:
    def text(value: Any) -> str:
        return "-" if value is None else printable(str(value))

    return (text(doc["channel"]), text(doc["node"]), text(doc["host"]), text(doc["pid"]),
            f"{human_ms(doc['seen_ago_ms'])} ago", "yes" if doc["live"] else "left" if doc["left_at"] else "no",
            text(doc["position"]),
            str(doc["latest"]), text(doc["behind"]))
