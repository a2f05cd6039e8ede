"""The lease history: reading it (by name or glob, since a time, by node) and what on-call wants
from it first: how many events, the longest hold and the longest wait.

The stores record the events themselves, in the write of the operation they describe (see
``stores.protocols.LeaseStore.history``); ``Leases.record`` adds those no store operation sees."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from .inputs import validate_mutex_id
from .models import LeaseEvent

if TYPE_CHECKING:
    from .stores.protocols import LeaseStore

MAX_LIMIT = 100_000
GLOB = "*?["


class Summary(NamedTuple):
    total: int
    longest_hold: LeaseEvent | None  # the release (or forced release) that ended the longest hold shown
    longest_wait: LeaseEvent | None  # the acquire whose acquirer waited longest


def read(store: LeaseStore, patterns: Sequence[str] = (), *, since_s: float | None = None, node: str | None = None,
         limit: int = 100) -> list[LeaseEvent]:
    """Events newest first: of the mutexes named or matching the glob ``patterns`` (none: all),
    at or after ``since_s`` seconds ago (the store's clock), done by ``node`` or taking over from it."""
    names: list[str] | None = None
    if patterns:
        plain = [validate_mutex_id(p) for p in patterns if not any(ch in p for ch in GLOB)]
        globs = [p for p in patterns if p not in plain]
        names = plain
        if globs:
            known = {s.mutex_id for s in store.overview(None, 0).states} | {
                e.mutex_id for e in store.history(None, since_s=since_s, node=node, limit=MAX_LIMIT)}
            names += sorted(n for n in known if any(fnmatch.fnmatchcase(n, g) for g in globs))
        if not names:
            return []
    return store.history(names, since_s=since_s, node=node, limit=limit)


def summarize(events: Sequence[LeaseEvent]) -> Summary:
    holds = [e for e in events if e.held_ms is not None]
    waits = [e for e in events if e.waited_ms is not None]
    return Summary(len(events), max(holds, key=lambda e: e.held_ms or 0, default=None),
                   max(waits, key=lambda e: e.waited_ms or 0, default=None))
