"""``config show``: the settings a command would use, and where each came from."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

from typing import Any

import typer
from typer.core import TyperGroup

from ..config import file_key
from ..models import human_ms
from ..redact import mask_url
from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation

CONFIG = typer.Typer(name="config", cls=TyperGroup, no_args_is_help=True, **APP_SETTINGS)


@CONFIG.callback()
def config_group() -> None:
    """The settings mutexctl resolves from flags, MUTEXCTL_* variables and the parameter file."""


@CONFIG.command()
def show(
    ctx: typer.Context,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Print the resolved settings and the source of each (flag, variable, file and key, or default).

    Credentials in the store URL are masked. Nothing is connected to.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    settings, sources = inv.settings()
    values = _values(settings._asdict())
    if inv.as_json:
        inv.out.doc({"ok": True, "config_file": str(settings.config_file) if settings.config_file else None,
                     "settings": values, "sources": sources, "keys": {field: file_key(field) for field in values}})
        return exit_codes.SUCCESS
    inv.out.data(f"config file: {settings.config_file or '(none found)'}")
    rows = [(file_key(field), _text(field, value), sources[field]) for field, value in values.items()
            if field != "mutexes"]
    rows += [(f"mutexes.{name}", _override_text(entry), sources["mutexes"])
             for name, entry in values["mutexes"].items()] or [("mutexes", "-", sources["mutexes"])]
    width = max(len(key) for key, _, _ in rows)
    for key, shown, source in rows:  # the parameter file's names for them
        inv.out.data(f"{key.ljust(width)}  {shown}  [{source}]")
    return exit_codes.SUCCESS


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    values = {key: value for key, value in fields.items() if key != "config_file"}
    values["store"] = mask_url(values["store"])
    values["mutexes"] = {name: {"timeout_ms": o.timeout_ms, "wait_s": o.wait_s}
                         for name, o in values["mutexes"].items()}
    return values


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_ms"):
        return human_ms(value)
    if key.endswith("_s"):
        return "inf" if value == float("inf") else human_ms(value * 1000)
    return str(value)


def _override_text(entry: dict[str, Any]) -> str:
    return f"timeout {human_ms(entry['timeout_ms']) if entry['timeout_ms'] else '-'}, wait " \
           f"{_text('wait_s', entry['wait_s'])}"
