"""Views of the store for people and scripts: status (the table is ``table``), its JSON documents, and
init-schema's report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..diagnose import liveness, why
from ..identity import host_name
from ..models import ForcedRelease, InitResult, MutexState, OnceMarker, human_ms, iso_ms
from ..redact import printable
from ..schema import SCHEMA_VERSION, title
from .output import Output


def marker_line(marker: OnceMarker) -> str:
    return printable(f"# once: {marker.mutex_id} {marker.key} done by {marker.by_node} at {iso_ms(marker.at)}"
                     f" (fence {_fence(marker.fence)})")


def render_status(states: Sequence[MutexState], forced: Sequence[ForcedRelease],
                  markers: Sequence[OnceMarker] = ()) -> None:
    """The table, then why each mutex that is not free is as it is, then the recent forced releases.
    Text users wrote (names, reasons, command lines) is shown with control characters escaped."""
    from .table import render

    alive = liveness(host_name())
    lines = render(states)
    lines += [f"# {printable(state.mutex_id)}: {printable(why(state, alive=alive))}"
              for state in states if state.state != "free"]
    lines += [printable(f"# forced release of {record.mutex_id} at {iso_ms(record.at)} by {record.by_user}@"
                        f"{record.by_host} ({record.by_node}): {record.reason} "
                        f"[was {record.previous_holder}, fence {_fence(record.previous_fence)}]") for record in forced]
    lines += [marker_line(marker) for marker in markers]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def render_init(out: Output, store_url: str, result: InitResult, *, dry_run: bool) -> None:
    """init-schema's report: the server's facts, then what was (or would be) applied."""
    if out.as_json:
        retention = None
        if result.retention is not None:
            retention = dict(zip(("before_s", "after_s"), result.retention, strict=True))
        out.doc({"ok": True, "store": store_url, "server": result.server, "version_before": result.version_before,
                 "version": result.version, "tool_version": SCHEMA_VERSION, "applied": list(result.applied),
                 "pending": list(result.pending), f"{result.retention_setting}_change": retention,
                 **({} if result.retention_setting == "log_retention" else {"log_retention_change": None}),
                 "dry_run": dry_run})
        return
    out.data(f"store: {store_url}")
    for key, value in result.server.items():
        out.data(f"  {key.replace('_', ' ')}: {value}")
    change = None
    if result.retention is not None:
        before, after = (human_ms(seconds * 1000) for seconds in result.retention)
        what = "broadcast log" if result.retention_setting == "log_retention" else "lease history"
        change = f"{what} retention {before} -> {after} ({result.retention_setting})"
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
