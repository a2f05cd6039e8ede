"""The lock commands: ``acquire``, ``release``, ``status``. Each parses, makes one library call, renders."""

# (no "from __future__ import annotations": typer reads these signatures at every start, and string
# annotations would make it evaluate each Annotated[..., typer.Option(...)] again)

from collections.abc import Callable
from typing import Annotated, Optional

import typer

from ..config import validate_mutex_id
from ..errors import LeaseLostError, LockHeldError, StoreUnavailableError, UsageError
from ..models import EXCLUSIVE, Lease, MutexState, OnceMarker, RunResult, human_ms, iso_ms
from ..redact import printable
from . import exit_codes
from .acquiring import CommandAfterName, enclosing_fence, reenter
from .common import (
    APP_SETTINGS,
    Command,
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
from .completion import mutex_names
from .documents import lease_doc
from .output import Output

# One Typer app per command: the root builds only the command that runs (see app.LazyGroup).
ACQUIRE, RENEW, RELEASE = (typer.Typer(**APP_SETTINGS) for _ in range(3))


@ACQUIRE.command(cls=CommandAfterName, context_settings={"ignore_unknown_options": False})
def acquire(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The mutex name.", show_default=False,
                                         autocompletion=mutex_names)],
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="[-- COMMAND [ARGS]...]", help="Run this command while holding the lease.", show_default=False)] = None,
    timeout: Annotated[Optional[str], duration_option(
        "-t", "--timeout", help="Lease length (e.g. 500ms, 30s, 2m, 1h30m); default 30s.")] = None,
    wait: Annotated[Optional[str], duration_option(
        "-w", "--wait", help="Wait up to this long for a busy mutex; inf (or forever) waits for ever.")] = None,
    nonblock: Annotated[bool, typer.Option("-n", "--nonblock", "--nb", "--nonblocking",
                                           help="Try once; do not wait (the default).")] = False,
    conflict_exit_code: Annotated[Optional[int], typer.Option(
        "-E", "--conflict-exit-code", metavar="N", help="Exit status when the mutex is busy (default 1).",
        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", metavar="N", help="A semaphore: take one of N slots (every holder must name the same N).",
        show_default=False)] = None,
    shared: Annotated[bool, typer.Option(
        "-s", "--shared", help="A shared (reader's) hold: any number together, none while an exclusive holder is in.")
    ] = False,
    exclusive: Annotated[bool, typer.Option(
        "-x", "-e", "--exclusive", help="An exclusive hold (the default; flock's spelling).")] = False,
    shell: Annotated[Optional[str], typer.Option(
        "-c", "--shell", metavar="STRING", help="Run STRING with sh -c under the lease (flock's -c, consul's "
                                                 "-shell).", show_default=False)] = None,
    no_stdin: Annotated[bool, typer.Option(
        "--no-stdin", help="The command reads /dev/null, not this stdin (a command in a 'while read' loop).")
    ] = False,
    hold_for: Annotated[Optional[str], typer.Option(
        "--hold-for", metavar="PID", help="Token mode for a process's lifetime: a keeper renews the lease until PID "
                                          "exits ($$: this shell; 'parent': mutexctl's parent), then releases it.",
        show_default=False)] = None,
    hold_report: Annotated[Optional[int], typer.Option("--hold-report", hidden=True)] = None,
    once: Annotated[Optional[str], typer.Option(
        "--once", metavar="KEY", help="Run COMMAND once for (NAME, KEY): later instances exit 0 without running "
                                      "it; default --wait inf.", show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Take a lease: print its fence (token) on stdout, or run COMMAND under it and release it after.

    --limit N takes one of N slots of a semaphore, --shared a shared hold (a plain acquire of the same
    name is then the exclusive side of a read/write lock: it waits for the shared holders, and new
    shared holds wait for it). --once KEY runs COMMAND only if no instance has run it to exit 0 for
    KEY; the others wait for it and exit 0 ("already done").

    In exec mode the lease is renewed every timeout/3 (at most 5 s apart); if it cannot be, the command's process group
    gets SIGTERM, then SIGKILL, before the lease could pass to another node (exit 75). INT, TERM, HUP, QUIT, USR1
    and USR2 are forwarded to the group. On a terminal the command is a job: Ctrl-Z suspends it with mutexctl, and
    fg/bg resume it only if its lease cannot have expired meanwhile (else it is killed: exit 75). A watcher
    (lease-watch) kills the group if mutexctl dies or stays frozen past the lease. A plain release cannot end
    this lease (exit 3); --json writes its record on stderr, since stdout is the command's.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    if exclusive and (shared or limit is not None):
        raise UsageError("--exclusive asks for the lease another way than " + ("--shared" if shared else "--limit"),
                         hint="use one of them")
    if shell is not None:
        if command:
            raise UsageError("-c/--shell and a command after NAME are two commands", hint="give one of them")
        command = ["sh", "-c", shell]
    if no_stdin and not command:
        raise UsageError("--no-stdin applies to a command only", hint="add the command, or leave --no-stdin out")
    if hold_for is not None:
        from .holding import hold

        if command or once is not None:
            raise UsageError("--hold-for holds a lease without a command", hint="leave the command (or --once) out")
        return hold(inv, name, hold_for, hold_report, *_acquire_options(inv, name, None, timeout, wait, nonblock,
                                                                         conflict_exit_code, limit, shared, None),
                    limit, shared)
    lease_length, wait_s = _acquire_options(inv, name, command, timeout, wait, nonblock, conflict_exit_code, limit,
                                            shared, once)
    with inv.service() as svc:
        fence = None if once else enclosing_fence(svc, name, limit, shared)
        if fence is not None:  # a nested acquire inside `acquire NAME -- CMD`: that lease is already ours
            return reenter(inv, name, fence, command)
        if command:
            result = svc.run(name, command, timeout=lease_length, wait=wait_s, on_wait=_progress(inv.out),
                             limit=limit, shared=shared, once=once, stdin=not no_stdin)
        else:
            lease = svc.acquire(name, timeout=lease_length, wait=wait_s, on_wait=_progress(inv.out), limit=limit,
                                shared=shared)
    return _show_run(inv, name, result) if command else _show_lease(inv, name, lease)


def _acquire_options(inv: Invocation, name: str, command: Optional[list[str]], timeout: Optional[str],
                     wait: Optional[str], nonblock: bool, conflict_exit_code: Optional[int], limit: Optional[int],
                     shared: bool, once: Optional[str]) -> tuple[Optional[str], Optional[float]]:
    """The flags of acquire checked together: (the lease's length, the wait in seconds)."""
    if command:
        inv.out.json_to_stderr = True  # stdout is the command's
    if conflict_exit_code is not None:
        if not 0 <= conflict_exit_code <= 255:
            raise UsageError(f"--conflict-exit-code {conflict_exit_code} is not an exit status", hint="use 0-255")
        inv.conflict_code = conflict_exit_code
    validate_mutex_id(name)
    if wait is not None and nonblock:
        raise UsageError("--wait and --nonblock exclude each other", hint="use one of them")
    if limit is not None and shared:
        raise UsageError("--limit and --shared exclude each other",
                         hint="a semaphore has a number of slots; shared holds have none")
    if once is not None and not command:
        raise UsageError("--once needs a command to run", hint="mutexctl acquire NAME --once KEY -- COMMAND")
    lease_length = timeout_option(timeout)
    wait_s = 0.0 if nonblock else wait_option(wait)
    if once is not None and wait is None and not nonblock:
        wait_s = float("inf")  # the others wait for the one that runs it
    return lease_length, wait_s


def _progress(out: Output) -> Callable[[LockHeldError | StoreUnavailableError, float], None]:
    """The waiting line: who holds it, or the store's outage, and how long we have waited."""
    def waiting(reason: LockHeldError | StoreUnavailableError, elapsed: float) -> None:
        waited = human_ms(elapsed * 1000)
        if isinstance(reason, StoreUnavailableError):
            out.progress(f"waiting: {reason.message}; trying again until the wait ends [waited {waited}]",
                         kind="outage")
        else:
            out.progress(f"waiting: {reason.message} [waited {waited}]", kind="held")

    return waiting


def _show_run(inv: Invocation, name: str, result: RunResult) -> int:
    """A command's end under its lease: its status, or "already done", or the loss (75)."""
    out = inv.out
    if result.done is not None:
        from .documents import marker_doc

        out.end_progress()
        done = result.done
        if inv.as_json:
            out.doc({"ok": True, "mutex": name, "status": None, "done": marker_doc(done)})
        else:
            out.note(printable(f"'{name}' --once {done.key}: already done by {done.by_node} at "
                               f"{iso_ms(done.at)} (fence {done.fence}); not run"))
        return exit_codes.SUCCESS
    if result.lost is not None:
        raise lost_error(f"lease on '{name}' (fence {result.fence})", name, result)
    if result.release_error is not None:
        out.note(f"mutexctl: warning: the command finished but the lease was not released: {result.release_error}")
    if inv.verbose and result.waited_s is not None and result.held_s is not None:  # (flock's --verbose)
        out.note(f"mutexctl: waited {human_ms(result.waited_s * 1000)} for '{name}' (fence {result.fence}), held it "
                 f"{human_ms(result.held_s * 1000)}; the command exited with {result.status}")
    if inv.as_json:
        out.doc({"ok": True, "mutex": name, "fence": result.fence, "status": result.status, "done": None,
                 "waited_ms": None if result.waited_s is None else round(result.waited_s * 1000),
                 "held_ms": None if result.held_s is None else round(result.held_s * 1000)})
    return result.status


def lost_error(what: str, name: str, result: RunResult) -> LeaseLostError:
    """A command's lease lost under it: what was lost, what became of the command, the hint for its cause."""
    ending = "was stopped" if result.stopped else "ran to its end without it"
    hint = _LOST_HINTS.get(result.lost_kind or "", "see 'mutexctl status' and 'mutexctl history {name}'")
    return LeaseLostError(f"{what} was lost: {result.lost}; the command {ending} (status {result.status})",
                          hint=hint.format(name=name))


_LOST_HINTS = {  # by what ended the lease
    "refused": "see 'mutexctl history {name}' for who ended it (a forced release) or why it ran out",
    "outage": "see 'mutexctl doctor'; a longer --timeout tolerates longer store outages",
    "suspended": "resume a suspended job (fg) before its lease runs out, or give it a longer --timeout",
}


def _show_lease(inv: Invocation, name: str, lease: Lease) -> int:
    """A token-mode lease: its fence on stdout (the token), how to release it on a terminal."""
    if inv.as_json:
        inv.out.doc({"ok": True, **lease_doc(lease)})
    else:
        inv.out.data(str(lease.fence))
        inv.out.detail(f"acquired '{name}' as {lease.node_id} for {human_ms(lease.timeout_ms)} (fence {lease.fence}); "
                       f"release with: mutexctl release {name} --token {lease.fence}")
    return exit_codes.SUCCESS


@RENEW.command(cls=Command)
def renew(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The mutex name.", show_default=False,
                                         autocompletion=mutex_names)],
    token: Annotated[int, typer.Option(
        "--token", metavar="FENCE", help="The lease to renew (the fence acquire printed).", show_default=False)],
    timeout: Annotated[Optional[str], duration_option(
        "-t", "--timeout", help="Renew for this long from now (default: the lease's own timeout).")] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Keep a token-mode lease alive (etcd's keep-alive), for scripts that hold one across steps.

    Exit 3 when the lease already ended (it may have passed on: acquire again).
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    validate_mutex_id(name)
    lease_length = timeout_option(timeout)
    with inv.service() as svc:
        lease = svc.renew_token(name, token, timeout=lease_length)
    if inv.as_json:
        inv.out.doc({"ok": True, **lease_doc(lease)})
    else:
        inv.out.detail(f"renewed '{name}' (fence {lease.fence}) for {human_ms(lease.timeout_ms)}")
    return exit_codes.SUCCESS


@RELEASE.command(cls=Command)
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The mutex name.", show_default=False,
                                         autocompletion=mutex_names)],
    token: Annotated[Optional[int], typer.Option(
        "--token", metavar="FENCE", help="Release only this lease (the fence acquire printed).",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Break the lease whoever holds it (on the record).")] = False,
    reason: Annotated[Optional[str], typer.Option(
        "--reason", metavar="TEXT", help="Why a lease is forced; required with --force.", show_default=False)] = None,
    holder: Annotated[Optional[str], typer.Option(
        "--holder", metavar="NODE", help="With --force: only this node's slots (a semaphore, shared holds).",
        show_default=False)] = None,
    fence: Annotated[Optional[int], typer.Option(
        "--fence", metavar="F", help="With --force: only the holder with this fence.", show_default=False)] = None,
    once: Annotated[Optional[str], typer.Option(
        "--once", metavar="KEY", help="With --force: clear the done marker of (NAME, KEY), so it runs again.",
        show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Release a lease held by this node (and --token), or break a stuck one with --force --reason.

    On a semaphore or shared lock, --force ends every holder, or the one chosen by --holder/--fence.
    --once KEY --force --reason clears a run-once marker instead.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    validate_mutex_id(name)
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason", hint='add --reason "why the lease is stuck"; it is recorded')
    if reason is not None and not force:
        raise UsageError("--reason only goes with --force")
    if force and token is not None:
        raise UsageError("--token and --force exclude each other", hint="--force ignores the owner")
    if not force and (holder is not None or fence is not None or once is not None):
        raise UsageError("--holder, --fence and --once go with --force --reason")
    if once is not None and (holder is not None or fence is not None):
        raise UsageError("--once clears a marker; --holder and --fence choose a lease's holder: use one")
    with inv.service() as svc:
        if once is not None:
            cleared = svc.clear_once(name, once, reason=reason or "")
        elif force:
            before = svc.force_release(name, reason=reason or "", node=holder, fence=fence)
        else:
            svc.release(name, token=token)
    if once is not None:
        _report_cleared(name, once, cleared, inv.as_json, inv.out)
    elif force:
        _report_forced(name, before, inv.as_json, inv.out, holder=holder, fence=fence)
    elif inv.as_json:
        inv.out.doc({"ok": True, "mutex": name, "released": True})
    else:
        inv.out.detail(f"released '{name}'")
    return exit_codes.SUCCESS


def _report_cleared(name: str, key: str, cleared: Optional[OnceMarker], as_json: bool, out: Output) -> None:
    from .documents import marker_doc

    if as_json:
        out.doc({"ok": True, "mutex": name, "key": key, "cleared": marker_doc(cleared) if cleared else None})
    elif cleared is not None:
        out.note(printable(f"cleared '{name}' --once {key} (done by {cleared.by_node} at {iso_ms(cleared.at)}); "
                           "recorded. The next acquire --once runs it again."))
    else:
        out.note(printable(f"'{name}' --once {key} is not marked done; nothing to clear"))


def _report_forced(name: str, before: Optional[MutexState], as_json: bool, out: Output, *,
                   holder: Optional[str] = None, fence: Optional[int] = None) -> None:
    if before is not None and before.kind != EXCLUSIVE:
        from .documents import slot_doc

        ended = [s for s in before.slots if holder in (None, s.node) and fence in (None, s.fence)]
        if as_json:
            out.doc({"ok": True, "mutex": name, "released": True, "kind": before.kind,
                     "ended": [slot_doc(s) for s in ended], "left": len(before.slots) - len(ended)})
        else:
            out.note(printable(f"force-released {len(ended)} of {len(before.slots)} holders of '{name}' ("
                               + "; ".join(f"{s.node} fence {s.fence}" for s in ended) + "); recorded. A mutexctl "
                               "still running a command in one stops it at its next renewal."))
        return
    if as_json:
        previous = {"previous_holder": before.taken_by, "previous_fence": None if before.foreign else before.fence,
                    "foreign": before.foreign} if before else {}
        out.doc({"ok": True, "mutex": name, "released": before is not None, **previous})
    elif before is not None and before.foreign:
        out.note(f"force-released '{name}' from {before.taken_by} (another service's lease, {before.state}); "
                 f"recorded. That service is not told.")
    elif before is not None:
        from ..diagnose import noticed_within

        out.note(f"force-released '{name}' from {before.taken_by} (fence {before.fence}, {before.state}); "
                 f"recorded. A mutexctl still running it stops its command at its next renewal "
                 f"(within {noticed_within(before)}).")
    elif holder is not None or fence is not None:
        out.note(f"no holder of '{name}' matches {'--holder ' + holder if holder else ''}"
                 f"{' ' if holder and fence else ''}{'--fence ' + str(fence) if fence else ''}; nothing released")
    else:
        out.note(f"'{name}' was not held; nothing to release")
