"""A shell's completion of mutex names (bash, zsh, fish, through typer's completion): the names in the
store now, read within a bounded time; a store that is slow, missing or unreachable completes nothing."""

from __future__ import annotations

import threading

import typer

BUDGET_S = 1.0  # a shell waits on this at every Tab
CONNECT_MS = 800  # how long a server store is looked for, within the budget
MAX_NAMES = 500


def mutex_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The store's mutex names that start with ``incomplete``, sorted; none if they cannot be read in time."""
    given: dict[str, str] = {}
    at: typer.Context | None = ctx
    while at is not None:  # --config, --store and --node-id, before the command name or after it
        for key in ("config", "store", "node_id"):
            value = at.params.get(key)
            if isinstance(value, str) and key not in given:
                given[key] = value
        at = at.parent  # type: ignore[assignment]
    found: list[str] = []
    reader = threading.Thread(target=_read, args=(given, incomplete, found), daemon=True)  # (abandoned if late)
    reader.start()
    reader.join(BUDGET_S)
    return [] if reader.is_alive() else found


def _read(given: dict[str, str], incomplete: str, found: list[str]) -> None:
    from ..config import resolve
    from ..errors import MutexctlError
    from ..models import CLI
    from ..service import Service
    from .common import FLAG_SOURCES

    try:
        settings, _ = resolve(config=given.get("config"), store=given.get("store"), node_id=given.get("node_id"),
                              given=FLAG_SOURCES)
        settings = settings._replace(connect_timeout_ms=min(settings.connect_timeout_ms, CONNECT_MS))
        names = [s.mutex_id for s in Service(settings, via=CLI, if_missing="empty").overview().states]
    except (MutexctlError, OSError):
        return
    found.extend(sorted(name for name in names if name.startswith(incomplete))[:MAX_NAMES])
