"""The root of the CLI: global options, the command table (each command group's module is imported only
when one of its commands runs), and ``run``, where every outcome becomes an exit status."""

# (no "from __future__ import annotations": typer reads these signatures at every start, and string
# annotations would make it evaluate each Annotated[..., typer.Option(...)] again)

import importlib
import os
import signal
import warnings
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from .._version import __version__
from ..errors import MutexctlError, UsageError
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, Invocation, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation
from .output import Output

HELP = """Named leases (mutexes with a timeout) shared through a database, for scripts, CI/CD and on-call.

The store is an embedded SQLite file by default (one host); give --store mongodb://… for a fleet."""

EPILOG = "Exit status: 0 ok, 1 held or wait timed out, 2 usage, 3 not the owner, 4 schema, 5 a broadcast " \
         "handler failed, 69 store unavailable, 75 lease lost, 78 configuration. See man mutexctl."

# Command name -> (module under mutexctl.cli, its Typer app for that one command), in help order.
COMMANDS = {"acquire": ("locks", "ACQUIRE"), "renew": ("locks", "RENEW"), "release": ("locks", "RELEASE"),
            "status": ("status", "STATUS"), "history": ("history", "HISTORY"),
            "elect": ("elect", "ELECT"), "init-schema": ("schema", "INIT_SCHEMA"),
            "broadcast": ("broadcast", "BROADCAST"),
            "listen": ("broadcast", "LISTEN"), "nodes": ("nodes", "NODES"),
            "doctor": ("doctor", "DOCTOR"), "metrics": ("metrics", "METRICS"), "config": ("settings", "CONFIG")}


class LazyGroup(TyperGroup):
    """The root group: a command's module is imported (and its click command built) on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(COMMANDS)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS and not ctx.resilient_parsing:
            import difflib

            from ..inputs import shown

            near = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
            raise UsageError(f"no command {shown(name)}", hint=(f"did you mean 'mutexctl {near[0]}'? " if near else "")
                             + "see 'mutexctl --help' for the commands")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Optional[TyperCommand]:  # type: ignore[override]
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where
        return typer.main.get_command(getattr(importlib.import_module(f"{__package__}.{module}"), name))  # type: ignore[return-value]


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        inv = ctx.find_object(Invocation)
        if inv is not None and inv.as_json:
            inv.out.doc({"ok": True, "version": __version__})
        else:
            print(f"mutexctl {__version__}")
        raise typer.Exit(0)


class CancelledByUserError(MutexctlError):
    kind = "interrupted"

    def __init__(self, message: str, *, signum: int = signal.SIGINT, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.signum = signum


# Ctrl-C, and the signals a service manager or a closed terminal sends: each ends a wait the same clean
# way (the queue entry left, the error line or document written) with the shell's 128+N.
_CANCELLING: dict[int, str] = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "stopped by SIGTERM",
               signal.SIGHUP: "stopped by SIGHUP (the terminal went away)"}


def _interrupted(signum: int, frame: object) -> None:
    raise CancelledByUserError(_CANCELLING[signum], signum=signum)


app = typer.Typer(name="mutexctl", help=HELP, epilog=EPILOG, no_args_is_help=True, cls=LazyGroup, **APP_SETTINGS)


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None,
                 as_json: JsonOpt = False, verbose: VerboseOpt = 0, debug: DebugOpt = False,
                 version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                       help="Print the version and exit.")] = False) -> None:
    invocation(ctx, config, store, node_id, as_json, verbose, debug)


def _scan_flags(argv: list[str]) -> tuple[bool, bool, bool]:
    """--json/--debug before any ``--``, and whether a command follows one (exec mode): needed to
    report errors that stop parsing itself where the command's own would go."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    exec_mode = "acquire" in head and len(head) < len(argv) - 1
    return "--json" in head, "--debug" in head, exec_mode


def _command_path(argv: list[str]) -> str:
    """``mutexctl`` and the (sub)command the words name, for a parser error that did not say where."""
    words = [word for word in argv[: argv.index("--")] if not word.startswith("-")] if "--" in argv else \
        [word for word in argv if not word.startswith("-")]
    path = ["mutexctl"]
    for word in words:
        if len(path) == 1 and word in COMMANDS:
            path.append(word)
        elif len(path) == 2 and path[1] in ("broadcast", "config") and word in ("send", "status", "show"):
            path.append(word)
            break
        elif len(path) > 1:
            break
    return " ".join(path)


def run(argv: list[str]) -> int:
    """Parse and run one command line; every outcome becomes an exit status here."""
    if "_MUTEXCTL_COMPLETE" in os.environ:  # a shell asking for completions: register typer's shells
        from typer.completion import completion_init  # type: ignore[attr-defined]

        completion_init()
    # Drivers' warnings never reach the terminal raw: what matters (a URL option pymongo would ignore)
    # is checked and reported as an error of our own; the rest is noise for a one-shot command.
    warnings.simplefilter("ignore")
    as_json, debug, exec_mode = _scan_flags(argv)
    inv = Invocation(as_json=as_json, debug=debug, out=Output(as_json=as_json, json_to_stderr=exec_mode))
    inv.argv = list(argv)
    # Ctrl-C as an error of our own (the framework would turn a KeyboardInterrupt into a bare 130), and
    # TERM/HUP likewise; a signal the caller ignores (nohup) stays ignored.
    for signum, untouched in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL),
                              (signal.SIGHUP, signal.SIG_DFL)):
        if signal.getsignal(signum) is untouched:
            signal.signal(signum, _interrupted)
    try:
        if argv and argv[-1] == "--" and argv.count("--") == 1:
            raise UsageError("nothing after '--'", hint="name the command to run after it, or leave '--' out")
        command = typer.main.get_command(app)
        result: Any = command.main(args=argv, prog_name="mutexctl", standalone_mode=False, obj=inv)
        return result if isinstance(result, int) else exit_codes.SUCCESS
    except typer.TyperException as exc:  # the parser's usage errors
        if type(exc).__name__ == "NoArgsIsHelpError" and not inv.as_json:  # `mutexctl`, `mutexctl broadcast`
            try:  # the help alone, as asked for: no "mutexctl: " in front, no hint after it
                print(exc.format_message())
            except BrokenPipeError:
                return exit_codes.PIPE_CLOSED
            return exc.exit_code
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or _command_path(argv)
        from .hints import bad_number

        text, hint = exc.format_message().strip(), f"see '{where} --help'"
        if type(exc).__name__ == "NoSuchOption" and where.endswith(" acquire"):  # (a command's own option)
            hint = f"a command to run goes after NAME, or after '--': mutexctl acquire NAME -- COMMAND ARGS…; or {hint}"
        number = bad_number(exc)
        if number is not None:
            text, hint = number
        error = UsageError(text, hint=hint)
        inv.out.fail(error, exc.exit_code)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt, CancelledByUserError) as exc:  # Ctrl-C, TERM, HUP
        cancelled = exc if isinstance(exc, CancelledByUserError) else CancelledByUserError(_CANCELLING[signal.SIGINT])
        code = 128 + cancelled.signum
        if inv.as_json or cancelled.signum != signal.SIGINT:
            inv.out.fail(cancelled, code)
        else:
            inv.out.interrupted(cancelled.message)
        return code
    except MutexctlError as exc:
        code = exit_codes.exit_code_for(exc, conflict_code=inv.conflict_code)
        inv.out.fail(exc, code)
        return code
    except BrokenPipeError:
        return exit_codes.PIPE_CLOSED
    except SystemExit as exc:  # the framework turns a closed pipe into exit 1, which means "held" here
        if isinstance(exc.__context__, BrokenPipeError):
            return exit_codes.PIPE_CLOSED
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no locals, no URL
        if inv.debug:
            import traceback

            traceback.print_exc()
        inv.out.fail(MutexctlError(f"internal error: {exc.__class__.__name__}: {exc}",
                                   hint="rerun with --debug for the traceback, and report it"),
                     exit_codes.INTERNAL)
        return exit_codes.INTERNAL
