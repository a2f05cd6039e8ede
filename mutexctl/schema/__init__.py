"""Schema: bring a store to this tool's version (``initialize``, under the mutex ``mutexctl.schema``),
and say where a store stands. The steps themselves are declared once, in ``stores.steps``."""

from __future__ import annotations

from ..config import SCHEMA_MUTEX
from ..errors import SchemaError
from ..models import SchemaState
from ..stores.common import newer_store_error
from ..stores.steps import SCHEMA_VERSION, STEPS, Step

__all__ = ["SCHEMA_MUTEX", "SCHEMA_VERSION", "STEPS", "check_version", "describe", "pending_steps", "title"]


def pending_steps(version: int) -> list[Step]:
    """Steps after ``version``; a store newer than this tool is refused."""
    if version > SCHEMA_VERSION:
        raise newer_store_error(version)
    return [step for step in STEPS if step.number > version]


def title(number: int) -> str:
    return next(step.title for step in STEPS if step.number == number)


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


def check_version(state: SchemaState | None, missing: list[tuple[int, str]]) -> None:
    """``init-schema --check``: SchemaError unless the store is at exactly this tool's version with
    nothing of its steps missing (e.g. a dropped index)."""
    if state is None:
        raise SchemaError(f"the store's schema is not initialized; this tool's is version {SCHEMA_VERSION}",
                          hint="run mutexctl init-schema")
    if state.version != SCHEMA_VERSION:
        older = state.version < SCHEMA_VERSION
        raise SchemaError(f"the store's schema is at version {state.version}, this tool's is {SCHEMA_VERSION}",
                          hint="run mutexctl init-schema" if older else "upgrade mutexctl on this host")
    if missing:
        raise SchemaError(f"the store's schema is at version {state.version}, but "
                          + "; ".join(text for _, text in missing), hint="run mutexctl init-schema to repair it")
