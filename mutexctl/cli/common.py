"""What every command shares: the Typer app, the global options, and the Invocation they fill."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import typer

from .._version import __version__
from ..config import load_settings
from ..mutex import Service
from . import exit_codes
from .output import Output

HELP = """Named leases (mutexes with a timeout) shared through a database, for scripts, CI/CD and on-call.

The store is an embedded SQLite file by default (one host); give --store mongodb://… for a fleet."""

EPILOG = "Exit status: 0 ok, 1 held or wait timed out, 2 usage, 3 not the owner, 4 schema, 5 a broadcast " \
         "handler failed, 69 store unavailable, 75 lease lost, 78 configuration. See man mutexctl."

app = typer.Typer(
    name="mutexctl", help=HELP, epilog=EPILOG, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
    rich_markup_mode="rich" if sys.stdout.isatty() else None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Invocation:
    """What the global options and the running command agreed on; ``run`` reads it to exit."""

    config: str | None = None
    store: str | None = None
    node_id: str | None = None
    as_json: bool = False
    verbose: int = 0
    debug: bool = False
    conflict_code: int = exit_codes.CONFLICT
    out: Output = field(default_factory=Output)

    def merge(self, config: str | None, store: str | None, node_id: str | None, as_json: bool, verbose: int,
              debug: bool) -> Invocation:
        self.config = config if config is not None else self.config
        self.store = store if store is not None else self.store
        self.node_id = node_id if node_id is not None else self.node_id
        self.as_json = self.as_json or as_json
        self.verbose = max(self.verbose, verbose)
        self.debug = self.debug or debug
        self.out = Output(as_json=self.as_json, verbose=self.verbose)
        return self

    def service(self) -> Service:
        return Service(load_settings(config=self.config, store=self.store, node_id=self.node_id))


def _version(value: bool) -> None:
    if value:
        print(f"mutexctl {__version__}")
        raise typer.Exit(0)


def duration_option(*names: str, help: str) -> Any:  # noqa: A002 - typer's own parameter name
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
VerboseOpt = Annotated[int, typer.Option("-v", "--verbose", count=True, help="Say more on stderr.",
                                          show_default=False)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
VersionOpt = Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")]
