"""``status``: every mutex (or those asked), who holds it, the time left and why; ``--watch`` keeps it on screen."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

import gc
from datetime import UTC, datetime
from typing import Annotated, Optional

import typer

from ..config import validate_mutex_id
from ..errors import NotHeldError, UsageError
from ..identity import host_name
from ..models import Overview
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, Invocation, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation
from .completion import mutex_names

STATUS = typer.Typer(**APP_SETTINGS)


@STATUS.command()
def status(
    ctx: typer.Context,
    patterns: Annotated[Optional[list[str]], typer.Argument(
        metavar="[PATTERN]...", help="Only these mutexes: names, or globs such as 'deploy-*'.",
        show_default=False, autocompletion=mutex_names)] = None,
    held: Annotated[bool, typer.Option("--held", help="Only held mutexes; exit 1 when none is.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep showing it: live on a terminal (Ctrl-C quits, "
                                                        "exit 0); piped, a snapshot per interval.")] = False,
    watch_w: Annotated[bool, typer.Option("-w", hidden=True, help="Deprecated spelling of --watch.")] = False,
    interval: Annotated[Optional[str], typer.Option("--interval", metavar="DURATION", show_default=False,
                                                    help="With --watch: how often to read the store; default 1s.")
                        ] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Show every mutex: held, expired or free; who holds it, since when, time left, and why it is stuck.

    PATTERNs (globs) pick mutexes by name; with --held the exit status tells a script whether any of
    them is held (0) or none (1), like grep. --watch reads the store once per --interval (one read
    each); on a terminal the time left counts down between reads, with the newest history events
    below; piped, it prints a snapshot per interval (with --json, one JSON document per line).
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    for pattern in patterns or ():
        validate_mutex_id(pattern)
    if watch_w:
        _deprecated_w(inv, patterns or [])
    watch = watch or watch_w
    if interval is not None and not watch:
        raise UsageError("--interval applies to --watch only", hint="add --watch, or leave --interval out")
    interval_s = _interval(interval or "1s") if watch else None
    with inv.service(reading=True) as svc:
        if interval_s is not None:
            from .watch import watch as watch_status

            return watch_status(inv, svc, patterns or (), held, interval_s)
        # One read and one print of what may be a fleet: tens of thousands of short-lived objects and
        # no cycles among them, so the collector's passes (a tenth of the time at 10,000 mutexes) wait.
        gc.disable()
        try:
            sent = datetime.now(UTC)
            view = svc.overview(patterns=patterns or (), held_only=held, forced_limit=5)
            received = datetime.now(UTC)
        finally:
            gc.enable()
        store_url, clock = svc.store.url, svc.store.clock
    from ..diagnose import clock_skew_ms  # status only

    # The store's clock judges leases; how far it is from ours matters when reading times.
    skew_ms = clock_skew_ms(view.store_now, sent, received) if clock == "server" else None
    gc.disable()
    try:
        return _show_status(inv, view, patterns, held, store_url, skew_ms)
    finally:
        gc.enable()


def _deprecated_w(inv: Invocation, patterns: list[str]) -> None:
    """``status -w``, once the short form of --watch: -w is --wait on every other command."""
    from ..inputs import parse_duration

    for pattern in patterns:  # `status -w 5s` watched a mutex named "5s"
        try:
            parse_duration(pattern, allow_zero=False)
        except UsageError:
            continue
        raise UsageError(f"'{pattern}' after -w reads as a duration, not a mutex name",
                         hint=f"to watch every {pattern}: mutexctl status --watch --interval {pattern}")
    inv.out.note("mutexctl: warning: 'status -w' is deprecated: use --watch (-w is --wait on the other commands)")


def _interval(interval: str) -> float:
    from ..inputs import parse_duration

    interval_s = parse_duration(interval, what="--interval", allow_zero=False)
    if interval_s < 0.1:
        raise UsageError(f"--interval {interval} is too short", hint="use 100ms or more")
    return interval_s


def _show_status(inv: Invocation, view: Overview, patterns: Optional[list[str]], held: bool, store_url: str,
                 skew_ms: Optional[float]) -> int:
    """The table (or the --json document) and the store's facts; with --held and none held, exit 1."""
    from ..diagnose import liveness, why
    from ..schema import SCHEMA_VERSION, describe
    from .documents import forced_doc, marker_doc, state_doc
    from .views import render_status

    none_held = held and not view.states
    if inv.as_json:
        alive = liveness(host_name())
        document = {"store": store_url, "store_clock_skew_ms": skew_ms,
                    "schema": {"version": view.schema.version if view.schema else None,
                               "tool_version": SCHEMA_VERSION},
                    "mutexes": [state_doc(s, why(s, alive=alive)) for s in view.states],
                    "forced_releases": [forced_doc(f) for f in view.forced],
                    "once": [marker_doc(m) for m in view.markers]}
        if none_held:
            inv.out.fail(_none_held(patterns), exit_codes.SILENT, **document)
            return exit_codes.SILENT
        inv.out.doc({"ok": True, **document})
        return exit_codes.SUCCESS
    if none_held:
        raise _none_held(patterns)
    if not view.states and patterns:
        inv.out.note(f"no mutex matching {' '.join(patterns)} has been taken: free")
        return exit_codes.SUCCESS
    render_status(view.states, view.forced, view.markers)
    inv.out.data(f"# store: {store_url}")
    inv.out.data(f"# schema: {describe(view.schema)}")
    if skew_ms is not None:
        inv.out.data(f"# store clock: {round(skew_ms):+d}ms from this host's (lease times are on the store's clock)")
    return exit_codes.SUCCESS


def _none_held(patterns: Optional[list[str]]) -> NotHeldError:
    which = f"matching {' '.join(patterns)} " if patterns else ""
    return NotHeldError(f"no mutex {which}is held")
