"""Versioned schema steps, applied under the mutex ``mutexctl.schema`` by ``init-schema``.

Steps are numbered from 1 and idempotent: each store implements step N (``apply_schema_step``) so
that running it twice does no harm, because a run killed between applying a step and recording it
leaves that step to the next run. Recording a step sets the store's version to N and appends it to
the step log in one write, so the log shows each step once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .errors import SchemaError

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
)
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
