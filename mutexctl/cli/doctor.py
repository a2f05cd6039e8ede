"""``doctor``: one line per check (ok / warn / fail), the fix under each that is not ok; exit 0
when every check passes, 1 when any warns or fails, 78 when the store named is not a store to use."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

import typer

from ..redact import printable
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation

DOCTOR = typer.Typer(**APP_SETTINGS)


@DOCTOR.command()
def doctor(
    ctx: typer.Context, config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None,
    as_json: JsonOpt = False, verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Check what on-call checks first, each with a verdict and a fix: exit 0 when all pass, 1 when any warns.

    The checks: the configuration file and node id in use; the store reachable, and its round-trip
    time; this host's clock against the store's; topology and write concern (w:1 on a replica set
    warns); schema version and indexes (the mutexId unique index included); leases held by
    processes that have exited on this host; listener nodes not seen lately. A store that cannot be
    reached fails the second check and the rest are skipped.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    from .. import doctor as checks_of

    with inv.service(reading=True) as svc:
        checks = checks_of.run(svc)
    passed = checks_of.verdict(checks)
    code = exit_codes.SUCCESS if passed else exit_codes.SILENT
    if any(c.data and c.data.get("error") == "config" for c in checks):
        code = exit_codes.CONFIG  # (the store named is not one: as every other command says)
    if inv.as_json:
        inv.out.doc({"ok": passed, "checks": [{"check": c.name, "status": c.status, "message": c.message,
                                               "fix": c.fix, **(c.data or {})} for c in checks]})
        return code
    width = max(len(c.name) for c in checks)
    for check in checks:
        inv.out.data(f"{check.status:<4}  {check.name:<{width}}  {printable(check.message)}")
        if check.fix and check.status != checks_of.OK:
            inv.out.data(f"{'':<4}  {'':<{width}}  fix: {printable(check.fix)}")
    warned = sum(c.status != checks_of.OK for c in checks)
    inv.out.data("# all checks passed" if passed else f"# {warned} of {len(checks)} checks need attention")
    return code
