"""What ``acquire`` reads before it takes anything: where a command given without ``--`` begins
(flock's rule), and whether an enclosing ``acquire NAME -- CMD`` already holds NAME for this process
(re-entry)."""

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..models import SEMAPHORE, SHARED
from ..redact import printable
from . import exit_codes
from .common import Command, Invocation

if TYPE_CHECKING:
    from ..service import Service


def command_start(args: list[str], params: Sequence[Any]) -> int | None:
    """Where the command begins in ``acquire``'s arguments given without ``--``: the first word after
    NAME that is neither an option of ours nor an option's value (flock's rule). None: there is none,
    or a ``--`` marks it already."""
    takes_value = {flag: not (param.is_flag or param.count) for param in params if param.param_type_name == "option"
                   for flag in (*param.opts, *param.secondary_opts)}
    words, skip = 0, False
    for at, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg.startswith("--"):
            skip = "=" not in arg and takes_value.get(arg, False)
        elif arg.startswith("-") and len(arg) > 1:  # a cluster of short options: -nE 3, -w5s
            for letter, flag in enumerate(arg[1:], 2):
                if takes_value.get(f"-{flag}", False):
                    skip = letter == len(arg)  # its value is the next word, unless it is the rest of this one
                    break
        else:
            words += 1
            if words == 2:  # NAME, then the command's first word
                return at
    return None


class CommandAfterName(Command):
    """``acquire NAME CMD ARGS…`` as ``acquire NAME -- CMD ARGS…``: options after the command's first
    word are the command's (``acquire mx1 ls -la``, ``acquire mx1 echo --timeout 5s``), as flock's are."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        at = command_start(args, self.params)
        return super().parse_args(ctx, args if at is None else [*args[:at], "--", *args[at:]])


def enclosing_fence(svc: "Service", name: str, limit: Optional[int], shared: bool) -> Optional[int]:
    """The fence of the lease an enclosing ``mutexctl acquire NAME -- CMD`` holds for this process (its
    MUTEXCTL_* variables name NAME and a fence that the store shows live for this node, taken the same
    way), else None. flock's nested lock on an inherited descriptor, made safe: a stale or forged
    variable takes nothing."""
    env = os.environ
    if env.get("MUTEXCTL_LOCK_HELD") != "1" or env.get("MUTEXCTL_MUTEX_ID") != name:
        return None
    try:
        fence = int(env.get("MUTEXCTL_FENCE", ""))
    except ValueError:
        return None
    from ..requests import this_process
    from ..stores.common import other_user

    node, user = svc.settings.node_id, this_process().user
    for state in svc.status(name):
        if state.state != "held":
            continue
        if state.slots:
            same_kind = state.kind == (SHARED if shared else SEMAPHORE) and (shared or limit == state.limit)
            if same_kind and any(s.fence == fence and s.node == node and not other_user(s.holder, user)
                                 for s in state.slots):
                return fence
        elif not limit and not shared and state.fence == fence and state.taken_by == node \
                and not other_user(state.holder, user):
            return fence
    return None


def reenter(inv: Invocation, name: str, fence: int, command: Optional[list[str]]) -> int:
    """Run COMMAND in this process's place (the enclosing mutexctl renews the lease and stops the whole
    group if it is lost), or, in token mode, print the fence: nothing is taken, nothing to release."""
    if not command:
        if inv.as_json:
            inv.out.doc({"ok": True, "mutex": name, "fence": fence, "reentered": True})
        else:
            inv.out.data(str(fence))
            inv.out.detail(f"'{name}' is already held by the enclosing command (fence {fence}); nothing was taken")
        return exit_codes.SUCCESS
    if inv.as_json:  # (before the command takes this process over: the record cannot come after)
        inv.out.doc({"ok": True, "mutex": name, "fence": fence, "status": None, "reentered": True})
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        from ..errors import CommandStartError

        missing = isinstance(exc, FileNotFoundError)
        raise CommandStartError(f"{'command not found' if missing else 'cannot run'}: {printable(command[0])}",
                                127 if missing else 126) from None
    return exit_codes.SUCCESS  # (not reached)
