"""Versioned schema steps, applied under the mutex ``mutexctl.schema`` by ``init-schema``.

Steps are numbered from 1 and idempotent: each store implements step N (``apply_schema_step``) so
that running it twice does no harm, because a run killed between applying a step and recording it
leaves that step to the next run. Recording a step sets the store's version to N and appends it to
the step log in one write, so the log shows each step once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import SchemaError

if TYPE_CHECKING:
    from .mutex import Service

SCHEMA_MUTEX = "mutexctl.schema"
DEFAULT_SCHEMA_TIMEOUT = "2m"
DEFAULT_SCHEMA_WAIT = "5m"

# Retention of what the TTL indexes (or, on SQLite, pruning on insert) keep.
HISTORY_RETENTION_S = 90 * 24 * 3600
LOG_RETENTION_S = 7 * 24 * 3600
NODE_RETENTION_S = 24 * 3600

STEPS: tuple[tuple[int, str], ...] = (
    (1, "mutexes: the collection (table) and an index on holders"),
    (2, "lease history: forced releases, kept 90 days (TTL index)"),
    (3, "broadcast: the message log (kept 7 days, TTL), per-node acks and the live-node registry"),
    (4, "mutexes: a unique index on mutexId (documents other services create are found by it)"),
)
UNIQUE_IDS_STEP = 4
SCHEMA_VERSION = STEPS[-1][0]


@dataclass(frozen=True)
class AppliedStep:
    step: int
    applied_at: datetime
    applied_by: str


@dataclass(frozen=True)
class SchemaState:
    """The store's ``meta`` record: ``{version, appliedAt, appliedBy, toolVersion}`` and the step log."""

    version: int
    applied_at: datetime
    applied_by: str
    tool_version: str
    steps: tuple[AppliedStep, ...] = ()


@dataclass(frozen=True)
class InitResult:
    """What init-schema found and did; ``pending`` is what a dry run would apply."""

    version_before: int
    version: int
    applied: tuple[int, ...]
    server: dict[str, str]
    pending: tuple[int, ...] = ()
    # (seconds kept before, seconds now) when the broadcast log's expiry was (or, dry, would be)
    # changed to the configured log_retention
    retention: tuple[int, int] | None = None


def _repairs(problems: list[tuple[int, str]], version: int) -> tuple[int, ...]:
    """Steps at or below ``version`` to apply again because part of their work is gone."""
    return tuple(sorted({step for step, _ in problems if step <= version}))


def pending_steps(version: int) -> list[tuple[int, str]]:
    """Steps after ``version``; a store newer than this tool is refused."""
    refuse_newer(version)
    return [(number, text) for number, text in STEPS if number > version]


def refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(f"the store's schema is at version {version}, newer than this tool's {SCHEMA_VERSION}",
                          hint="upgrade mutexctl on this host; older tools must not write to a newer store")


def describe(state: SchemaState | None) -> str:
    if state is None:
        return f"not initialized (this tool's schema is version {SCHEMA_VERSION}; run mutexctl init-schema)"
    if state.version == SCHEMA_VERSION:
        relation = "up to date with this tool"
    elif state.version < SCHEMA_VERSION:
        relation = f"older than this tool's {SCHEMA_VERSION}: run mutexctl init-schema"
    else:
        relation = f"NEWER than this tool's {SCHEMA_VERSION}: upgrade mutexctl"
    return (f"version {state.version} ({relation}), applied {state.applied_at.strftime('%Y-%m-%d %H:%M:%S')}Z "
            f"by {state.applied_by} with mutexctl {state.tool_version}")


def check_version(state: SchemaState | None) -> None:
    """``init-schema --check``: raise SchemaError unless the store is at exactly this tool's version."""
    if state is None:
        raise SchemaError(f"the store's schema is not initialized; this tool's is version {SCHEMA_VERSION}",
                          hint="run mutexctl init-schema")
    if state.version != SCHEMA_VERSION:
        older = state.version < SCHEMA_VERSION
        raise SchemaError(f"the store's schema is at version {state.version}, this tool's is {SCHEMA_VERSION}",
                          hint="run mutexctl init-schema" if older else "upgrade mutexctl on this host")


def initialize(svc: Service, *, wait: str | float | None = None, timeout: str | float | None = None,
               dry_run: bool = False, on_step: Callable[[int, str], None] | None = None) -> InitResult:
    """Bring the store to this tool's schema version, under the mutex ``mutexctl.schema``.

    Many runners at once: each waits for the mutex in turn; the first applies the missing steps,
    the others then find the store up to date and apply nothing. A store already up to date is
    seen without taking the mutex. ``dry_run`` reports the pending steps and changes nothing.
    A broadcast log kept for another time than ``log_retention`` (MongoDB's TTL index is fixed
    when created) is brought to the configured one as well.
    """
    store = svc.store
    server = store.server_report()
    state = store.schema_state()
    before = state.version if state else 0
    pending = pending_steps(before)
    drift = store.retention_drift()
    repairs = _repairs(store.schema_problems(), before)
    if dry_run or (not pending and drift is None and not repairs):
        return InitResult(before, before, (), server, tuple(n for n, _ in pending) + repairs, retention=drift)
    override = svc.settings.mutexes.get(SCHEMA_MUTEX)  # a `mutexes: {mutexctl.schema: …}` entry
    if wait is None:
        wait = override.wait_s if override and override.wait_s is not None else DEFAULT_SCHEMA_WAIT
    if timeout is None:
        timeout = override.timeout_ms / 1000 if override and override.timeout_ms else DEFAULT_SCHEMA_TIMEOUT
    applied: list[int] = []
    with svc.lock(SCHEMA_MUTEX, timeout=timeout, wait=wait) as held:
        state = store.schema_state()  # another runner may have finished while we waited
        version = state.version if state else 0
        for number in _repairs(store.schema_problems(), version):  # applied steps whose work was undone
            store.apply_schema_step(number)
            applied.append(number)
        for number, text in pending_steps(version):
            if held.lost:
                break  # leaving the block raises LeaseLostError; the next run goes on from here
            store.apply_schema_step(number)
            store.record_schema_step(number, svc.node_id, __version__)
            applied.append(number)
            version = number
            if on_step is not None:
                on_step(number, text)
        drift = store.retention_drift()  # again: another runner may have changed it meanwhile
        if drift is not None and not held.lost:
            store.apply_retention()
    return InitResult(before, version, tuple(applied), server, retention=drift)
