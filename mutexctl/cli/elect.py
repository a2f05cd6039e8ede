"""``elect``: stand for leader of an election and lead (running a command as the leader, or holding
the term until interrupted), or ``--observe`` who leads, now and at each change."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

import signal
from typing import Annotated, Optional

import typer

from ..config import validate_mutex_id
from ..election import Leader
from ..errors import LeaseLostError, UsageError
from ..models import iso_ms
from ..redact import printable
from . import exit_codes
from .acquiring import CommandAfterName
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
    wait_option,
)
from .completion import mutex_names

ELECT = typer.Typer(**APP_SETTINGS)


@ELECT.command(cls=CommandAfterName, context_settings={"ignore_unknown_options": False})
def elect(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The election (a mutex name).", show_default=False,
                                        autocompletion=mutex_names)],
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="[-- COMMAND [ARGS]...]", help="Run this command as the leader.", show_default=False)] = None,
    value: Annotated[str, typer.Option("--value", metavar="TEXT", help="What the leader announces (an address, "
                                                                      "an id); observers see it.")] = "",
    wait: Annotated[Optional[str], duration_option(
        "-w", "--wait", help="How long to stand as a candidate (default: for ever).")] = None,
    timeout: Annotated[Optional[str], duration_option(
        "-t", "--timeout", help="The term's lease (default 30s): a standby leads within it after a crash.")] = None,
    observe: Annotated[bool, typer.Option("--observe", help="Print the leader now and at each change, until "
                                                             "interrupted (--json: a JSON line each).")] = False,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Stand for leader of NAME (candidates are served first come, first served) and lead: run COMMAND as the leader.

    The term is the lease's fence, higher at every new leader (MUTEXCTL_FENCE in COMMAND's environment). A
    leader that cannot renew its term has COMMAND stopped before the next term can begin (exit 75); COMMAND's
    end ends the term. Without COMMAND, the term is printed and held until interrupted (exit 75 if it is lost).
    --observe prints the leader (node, value, term, since) now and at each change, in term order.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    validate_mutex_id(name)
    if observe:
        if command or value or wait is not None or timeout is not None:
            raise UsageError("--observe only watches", hint="leave out the command, --value, --wait and --timeout")
        return _observe(inv, name)
    wait_s = float("inf") if wait is None else wait_option(wait)
    with inv.service() as svc:
        if command:
            inv.out.json_to_stderr = True  # stdout is the command's
            result = svc.run_as_leader(name, command, value=value, timeout=timeout, wait=wait_s)
            if result.lost is not None:
                from .locks import lost_error

                raise lost_error(f"leadership of '{name}' (term {result.fence})", name, result)
            if inv.as_json:
                inv.out.doc({"ok": True, "mutex": name, "term": result.fence, "status": result.status})
            return result.status
        with svc.elect(name, value=value, timeout=timeout, wait=wait_s) as held:
            if inv.as_json:
                inv.out.doc({"ok": True, "mutex": name, "node": held.lease.node_id, "term": held.fence, "value": value})
            else:
                inv.out.data(str(held.fence))
                inv.out.detail(f"leading '{name}' as {held.lease.node_id} (term {held.fence}); Ctrl-C resigns")
            held.stop_event.wait()  # (a signal ends the wait: see app; leaving the block resigns)
            reason = held.lost_reason or "the service is shutting down"
    raise LeaseLostError(f"leadership of '{name}' (term {held.fence}) was lost: {reason}",
                         hint=f"see 'mutexctl history {name}'")


def _observe(inv: Invocation, name: str) -> int:
    from .app import CancelledByUserError

    with inv.service(reading=True, missing_reads_empty=True) as svc:  # (an election not held yet: no leader)
        try:
            for leader in svc.observe(name):
                if inv.as_json:
                    inv.out.doc({"mutex": name, "leader": None if leader is None else _leader_doc(leader)})
                else:
                    inv.out.data(_line(name, leader))
        except CancelledByUserError as exc:  # Ctrl-C or TERM ends the watch: nothing went wrong
            if exc.signum != signal.SIGINT:
                raise
    return exit_codes.SUCCESS


def _leader_doc(leader: Leader) -> dict[str, object]:
    return {"node": leader.node, "value": leader.value, "term": leader.term,
            "since": iso_ms(leader.since) if leader.since else None}


def _line(name: str, leader: Optional[Leader]) -> str:
    if leader is None:
        return printable(f"{name}: no leader")
    shown = f" ({leader.value})" if leader.value else ""
    since = f" since {iso_ms(leader.since)}" if leader.since else ""
    return printable(f"{name}: term {leader.term}: {leader.node}{shown}{since}")
