"""What every command shares: the global options, and the Invocation they fill."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from ..config import DEFAULT_STORE_SOURCE, Settings, parse_wait_s, resolve
from ..models import CLI
from ..service import Service
from . import exit_codes
from .output import Output

# Every command module makes its Typer app with these. Help is plain text, on a terminal too: rich
# markup would read "[env: MUTEXCTL_STORE]" as a tag and drop it, and show -v as "<int>".
APP_SETTINGS: dict[str, Any] = {
    "add_completion": False, "pretty_exceptions_enable": False, "pretty_exceptions_show_locals": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


class Command(TyperCommand):
    """A command whose usage line names its arguments as its help does (``NAME``, not ``{NAME}``)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


class Invocation:
    """What the global options and the running command agreed on; ``run`` reads it to exit."""

    def __init__(self, *, as_json: bool = False, debug: bool = False, out: Output | None = None) -> None:
        self.config: str | None = None
        self.store: str | None = None
        self.node_id: str | None = None
        self.as_json = as_json
        self.verbose = 0
        self.debug = debug
        self.conflict_code = exit_codes.CONFLICT
        self.out = out or Output(as_json=as_json)
        self.argv: list[str] = []  # the command line as given (acquire --hold-for starts its keeper with it)

    def merge(self, config: str | None, store: str | None, node_id: str | None, as_json: bool, verbose: int,
              debug: bool) -> Invocation:
        self.config = config if config is not None else self.config
        self.store = store if store is not None else self.store
        self.node_id = node_id if node_id is not None else self.node_id
        self.as_json = self.as_json or as_json
        self.verbose = max(self.verbose, verbose)
        self.debug = self.debug or debug
        self.out = Output(as_json=self.as_json, verbose=self.verbose, json_to_stderr=self.out.json_to_stderr)
        if self.verbose:
            from .logs import show_logs  # the library's log lines, on stderr, masked

            show_logs(self.verbose)
        return self

    def settings(self) -> tuple[Settings, dict[str, str]]:
        """The settings resolved (see config.resolve), after a warning for each MUTEXCTL_* variable
        that is none of ours."""
        from ..config import unknown_variables

        for name, near in unknown_variables():
            self.out.note(f"mutexctl: warning: {name} is not a mutexctl variable and is ignored"
                          + (f" (did you mean {near}?)" if near else ""))
        return resolve(config=self.config, store=self.store, node_id=self.node_id, given=FLAG_SOURCES)

    @contextlib.contextmanager
    def service(self, *, reading: bool = False, missing_reads_empty: bool = False) -> Iterator[Service]:
        """The command's Service. It is not closed: a CLI run ends with it, and the process's exit
        drops its connections. (Closing a MongoDB client first sends endSessions, one more round
        trip for nothing: the server forgets idle sessions by itself.)

        ``reading``: a command that only reads never makes a store. One that was named (a flag, the
        environment, the parameter file) and does not exist is an error naming it; the default one,
        not made yet, reads as empty, and a line says so (as a named one does with ``missing_reads_empty``)."""
        settings, sources = self.settings()
        named = sources["store"] != DEFAULT_STORE_SOURCE and not missing_reads_empty
        svc = Service(settings, via=CLI,  # token mode: the lease outlives this process
                      if_missing=("fail" if named else "empty") if reading else "create")
        yield svc
        if reading and getattr(svc.store, "missing", False):
            self.out.note(f"store {svc.store.url} does not exist yet (nothing has used it): shown empty")


# Where a value the user typed came from, as errors and ``config show`` tell it: the flag.
FLAG_SOURCES = {"config": "--config", "store": "--store", "node_id": "--node-id"}


def invocation(ctx: typer.Context, config: str | None, store: str | None, node_id: str | None, as_json: bool,
               verbose: int, debug: bool) -> Invocation:
    """The command's Invocation, with the global options it was given merged in."""
    return ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)


def timeout_option(value: str | None) -> str | None:
    """A lease length as typed: the library parses it once, where the lease is asked for (its error
    names the flag: see hints)."""
    return value


def wait_option(value: str | None, what: str = "--wait") -> float | None:
    return None if value is None else parse_wait_s(value, what=what)


def duration_option(*names: str, help: str) -> Any:
    """A ``DURATION`` option (500ms, 30s, 2m, 1h; a bare number is seconds; inf where it makes sense)."""
    return typer.Option(*names, metavar="DURATION", help=help, show_default=False)


# Shared options, declared once; they work before the command name and after it.
ConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", metavar="FILE", help="YAML parameter file [env: MUTEXCTL_CONFIG].", show_default=False)]
StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", metavar="URL", help="sqlite:///path.db or mongodb://… [env: MUTEXCTL_STORE].", show_default=False)]
NodeOpt = Annotated[Optional[str], typer.Option(
    "--node-id", metavar="ID", help="Who holds leases; default: the host name [env: MUTEXCTL_NODE_ID].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, errors included.")]
VerboseOpt = Annotated[int, typer.Option("-v", "--verbose", count=True,
                                          help="Say more on stderr: the library's log lines (-vv: debug).",
                                          show_default=False)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
