"""The Typer app. Commands are thin: parse, call one core function, render."""

# (no "from __future__ import annotations": typer reads these signatures at every start, and string
# annotations would make it evaluate each Annotated[..., typer.Option(...)] again)

import os
import traceback
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer

from ..config import parse_timeout_ms, parse_wait_s
from ..errors import LeaseLostError, LockHeldError, MutexctlError, UsageError
from ..models import MutexState, human_ms, validate_mutex_id
from ..mutex import Service
from ..schema import SCHEMA_VERSION, SchemaState, describe
from . import exit_codes
from .common import (ConfigOpt, DebugOpt, Invocation, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, VersionOpt, app,
                     duration_option)
from .output import Output, forced_doc, lease_doc, render_init, render_status, state_doc


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None,
                 as_json: JsonOpt = False, verbose: VerboseOpt = 0, debug: DebugOpt = False,
                 version: VersionOpt = False) -> None:
    ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)


@app.command(context_settings={"ignore_unknown_options": False})
def acquire(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The mutex name.", show_default=False)],
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="[-- COMMAND [ARGS]...]", help="Run this command while holding the lease.", show_default=False)] = None,
    timeout: Annotated[Optional[str], duration_option(
        "-t", "--timeout", help="Lease length (e.g. 500ms, 30s, 2m); default 30s.")] = None,
    wait: Annotated[Optional[str], duration_option(
        "-w", "--wait", help="Wait up to this long for a busy mutex; inf for ever.")] = None,
    nonblock: Annotated[bool, typer.Option("-n", "--nonblock", help="Try once; do not wait (the default).")] = False,
    conflict_exit_code: Annotated[Optional[int], typer.Option(
        "-E", "--conflict-exit-code", metavar="N", help="Exit status when the mutex is busy (default 1).",
        show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Take a lease: print its fence (token) on stdout, or run COMMAND under it and release it after.

    In exec mode the lease is renewed every timeout/3 (at most 5 s apart); if it cannot be, the command's process group
    gets SIGTERM, then SIGKILL, before the lease could pass to another node (exit 75). INT, TERM, HUP, QUIT, USR1
    and USR2 are forwarded to the group. On a terminal the command is a job: Ctrl-Z suspends it with mutexctl, and
    fg/bg resume it only if its lease cannot have expired meanwhile (else it is killed: exit 75).
    """
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    if conflict_exit_code is not None:
        if not 0 <= conflict_exit_code <= 255:
            raise UsageError(f"--conflict-exit-code {conflict_exit_code} is not an exit status",
                             hint="use 0-255")
        inv.conflict_code = conflict_exit_code
    validate_mutex_id(name)
    if wait is not None and nonblock:
        raise UsageError("--wait and --nonblock exclude each other", hint="use one of them")
    timeout_s = parse_timeout_ms(timeout, what="--timeout") / 1000 if timeout is not None else None
    wait_s = 0.0 if nonblock else (parse_wait_s(wait, what="--wait") if wait is not None else None)
    out = inv.out

    def waiting(held: LockHeldError, elapsed: float) -> None:
        out.progress(f"waiting: {held.message} [waited {human_ms(elapsed * 1000)}]")

    with inv.service() as svc:
        if command:
            return _run_command(inv, svc, name, command, timeout_s, wait_s, waiting)
        lease = svc.acquire(name, timeout=timeout_s, wait=wait_s, on_wait=waiting)
    if inv.as_json:
        out.doc({"ok": True, **lease_doc(lease)})
    else:
        out.data(str(lease.fence))
        out.detail(f"acquired '{name}' as {lease.node_id} for {human_ms(lease.timeout_ms)} (fence {lease.fence}); "
                   f"release with: mutexctl release {name} --token {lease.fence}")
    return exit_codes.SUCCESS


def _run_command(inv: Invocation, svc: Service, name: str, command: list[str], timeout_s: float | None,
                 wait_s: float | None, waiting: object) -> int:
    out = inv.out
    result = svc.run(name, command, timeout=timeout_s, wait=wait_s, on_wait=waiting)  # type: ignore[arg-type]
    if result.lost is not None:
        ending = "was stopped" if result.stopped else "ran to its end without it"
        error = LeaseLostError(f"lease on '{name}' (fence {result.fence}) was lost: {result.lost}; "
                               f"the command {ending} (status {result.status})",
                               hint="see 'mutexctl status'; a longer --timeout tolerates longer store outages")
        out.fail(error, exit_codes.LEASE_LOST)
        return exit_codes.LEASE_LOST
    if result.release_error is not None:
        out.note(f"mutexctl: warning: the command finished but the lease was not released: "
                 f"{result.release_error.message}")
    if inv.as_json:
        out.doc({"ok": True, "mutex": name, "fence": result.fence, "status": result.status})
    return result.status


@app.command()
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The mutex name.", show_default=False)],
    token: Annotated[Optional[int], typer.Option(
        "--token", metavar="FENCE", help="Release only this lease (the fence acquire printed).",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Break the lease whoever holds it (on the record).")] = False,
    reason: Annotated[Optional[str], typer.Option(
        "--reason", metavar="TEXT", help="Why a lease is forced; required with --force.", show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Release a lease held by this node (and --token), or break a stuck one with --force --reason."""
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    validate_mutex_id(name)
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason", hint='add --reason "why the lease is stuck"; it is recorded')
    if reason is not None and not force:
        raise UsageError("--reason only goes with --force")
    if force and token is not None:
        raise UsageError("--token and --force exclude each other", hint="--force ignores the owner")
    with inv.service() as svc:
        if force:
            before = svc.force_release(name, reason=reason or "")
            _report_forced(inv, name, before)
            return exit_codes.SUCCESS
        svc.release(name, token=token)
    if inv.as_json:
        inv.out.doc({"ok": True, "mutex": name, "released": True})
    else:
        inv.out.detail(f"released '{name}'")
    return exit_codes.SUCCESS


def _report_forced(inv: Invocation, name: str, before: MutexState | None) -> None:
    if inv.as_json:
        previous = {"previous_holder": before.taken_by, "previous_fence": None if before.foreign else before.fence,
                    "foreign": before.foreign} if before else {}
        inv.out.doc({"ok": True, "mutex": name, "released": before is not None, **previous})
    elif before is not None and before.foreign:
        inv.out.note(f"force-released '{name}' from {before.taken_by} (another service's lease, {before.state}); "
                     f"recorded. That service is not told: its V() will find the mutex no longer its own.")
    elif before is not None:
        from ..mutex import renew_interval_s

        notice = human_ms(renew_interval_s(before.timeout_ms or 0) * 1000)
        inv.out.note(f"force-released '{name}' from {before.taken_by} (fence {before.fence}, {before.state}); "
                     f"recorded. A mutexctl still running it stops its command at its next renewal (within {notice}).")
    else:
        inv.out.note(f"'{name}' was not held; nothing to release")


@app.command()
def status(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Show only this mutex.", show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Show every mutex: held, expired or free; who holds it, since when, time left, and why it is stuck."""
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    if name is not None:
        validate_mutex_id(name)
    with inv.service() as svc:
        sent = datetime.now(timezone.utc)
        view = svc.overview(name, forced_limit=5)
        received = datetime.now(timezone.utc)
        store_url, clock = svc.store.url, svc.store.clock
    states, forced, schema = view.states, view.forced, view.schema
    # The store's clock judges leases; how far it is from ours matters when reading times. The server
    # read its clock between our send and receive: compare with the midpoint.
    skew_ms = ((view.store_now - (sent + (received - sent) / 2)).total_seconds() * 1000
               if clock == "server" else None)
    if inv.as_json:
        import socket

        host = socket.gethostname()
        inv.out.doc({"ok": True, "store": store_url, "store_clock_skew_ms": skew_ms,
                     "schema": {"version": schema.version if schema else None, "tool_version": SCHEMA_VERSION},
                     "mutexes": [state_doc(s, host) for s in states],
                     "forced_releases": [forced_doc(f) for f in forced]})
        return exit_codes.SUCCESS
    if not states and name is not None:
        inv.out.note(f"'{name}' has never been taken: free")
        return exit_codes.SUCCESS
    render_status(states, forced)
    inv.out.data(f"# schema: {describe(schema)}")
    if skew_ms is not None:
        inv.out.data(f"# store clock: {skew_ms:+.0f}ms from this host's (lease times are on the store's clock)")
    return exit_codes.SUCCESS


@app.command("init-schema")
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
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    if dry_run and check:
        raise UsageError("--dry-run and --check exclude each other")
    wait_s = parse_wait_s(wait, what="--wait") if wait is not None else None
    timeout_s = parse_timeout_ms(timeout, what="--timeout") / 1000 if timeout is not None else None
    with inv.service() as svc:
        if check:
            state = svc.check_schema()
            _report_schema_check(inv, svc.store.url, state)
            return exit_codes.SUCCESS

        def applied(number: int, text: str) -> None:
            if inv.verbose:  # live progress; the report on stdout lists the steps at the end
                inv.out.note(f"applied step {number}: {text}")

        result = svc.init_schema(wait=wait_s, timeout=timeout_s, dry_run=dry_run, on_step=applied)
        store_url = svc.store.url
    render_init(inv.out, store_url, result, dry_run=dry_run)
    return exit_codes.SUCCESS


def _report_schema_check(inv: Invocation, store_url: str, state: SchemaState | None) -> None:
    if inv.as_json:
        inv.out.doc({"ok": True, "store": store_url, "version": state.version if state else None,
                     "tool_version": SCHEMA_VERSION})
    else:
        inv.out.data(f"schema of {store_url}: {describe(state)}")


def _scan_flags(argv: list[str]) -> tuple[bool, bool]:
    """--json/--debug before any ``--``: needed to report errors that stop parsing itself."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in head, "--debug" in head


def run(argv: list[str]) -> int:
    """Parse and run one command line; every outcome becomes an exit status here."""
    if "_MUTEXCTL_COMPLETE" in os.environ:  # a shell asking for completions: register typer's shells
        from typer.completion import completion_init

        completion_init()
    as_json, debug = _scan_flags(argv)
    inv = Invocation(as_json=as_json, debug=debug, out=Output(as_json=as_json))
    try:
        command = typer.main.get_command(app)
        result = command.main(args=argv, prog_name="mutexctl", standalone_mode=False, obj=inv)
        return result if isinstance(result, int) else exit_codes.SUCCESS
    except typer.TyperException as exc:  # the parser's usage errors
        where = getattr(getattr(exc, "ctx", None), "command_path", "mutexctl")
        error = UsageError(exc.format_message().strip(), hint=f"see '{where} --help'")
        inv.out.fail(error, exc.exit_code)
        return exc.exit_code
    except typer.Abort:
        return 130
    except MutexctlError as exc:
        code = exit_codes.exit_code_for(exc, conflict_code=inv.conflict_code)
        inv.out.fail(exc, code)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return exit_codes.SUCCESS
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no locals, no URL
        if inv.debug:
            traceback.print_exc()
        inv.out.fail(MutexctlError(f"internal error: {exc.__class__.__name__}: {exc}",
                                   hint="rerun with --debug for the traceback, and report it"),
                     exit_codes.INTERNAL)
        return exit_codes.INTERNAL


from . import broadcast as _broadcast  # noqa: E402,F401 - registers broadcast and listen after the lock commands
