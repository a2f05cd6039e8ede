"""``init-schema``: create or upgrade the store's schema, or check it."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..models import SchemaState
from ..schema import SCHEMA_VERSION, describe
from . import exit_codes
from .common import (
    APP_SETTINGS,
    ConfigOpt,
    DebugOpt,
    Invocation,
    JsonOpt,
    NodeOpt,
    StoreOpt,
    VerboseOpt,
    duration_option,
    invocation,
    timeout_option,
    wait_option,
)
from .views import render_init

INIT_SCHEMA = typer.Typer(**APP_SETTINGS)


@INIT_SCHEMA.command("init-schema")
def init_schema(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the steps it would apply; change nothing.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Exit 0 if the store is at this tool's schema version, 4 otherwise; change nothing.")] = False,
    wait: Annotated[Optional[str], duration_option(
        "-w", "--wait", help="Wait this long for another runner's init (default 5m).")] = None,
    timeout: Annotated[Optional[str], duration_option(
        "-t", "--timeout", help="Lease on mutexctl.schema while steps run (default 2m).")] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Create or upgrade the store's schema, safely from many CI jobs or instances at once.

    Steps run under the mutex mutexctl.schema: one runner applies them, the others wait and then find
    the store up to date. Checks the server too (MongoDB >= 4.2, topology, write concern), and
    applies a changed log_retention to the broadcast log's TTL index on MongoDB.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    if dry_run and check:
        raise UsageError("--dry-run and --check exclude each other")
    wait_s, lease_length = wait_option(wait), timeout_option(timeout)
    # (--dry-run of a store not made yet lists every step: what init-schema would do there)
    with inv.service(reading=check or dry_run, missing_reads_empty=dry_run) as svc:
        if check:
            _report_check(inv, svc.store.url, svc.check_schema())
            return exit_codes.SUCCESS

        def applied(number: int, text: str) -> None:
            if inv.verbose:  # live progress; the report on stdout lists the steps at the end
                inv.out.note(f"applied step {number}: {text}")

        result = svc.init_schema(wait=wait_s, timeout=lease_length, dry_run=dry_run, on_step=applied)
        store_url = svc.store.url
    render_init(inv.out, store_url, result, dry_run=dry_run)
    return exit_codes.SUCCESS


def _report_check(inv: Invocation, store_url: str, state: SchemaState) -> None:
    if inv.as_json:
        inv.out.doc({"ok": True, "store": store_url, "version": state.version, "tool_version": SCHEMA_VERSION})
    else:
        inv.out.data(f"schema of {store_url}: {describe(state)}")
