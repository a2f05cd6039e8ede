"""``init-schema``: apply the missing steps under the mutex ``mutexctl.schema``, safely from many
runners at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..config import SCHEMA_MUTEX
from ..keeper import hold
from ..leases import Leases
from ..logs import logger
from ..models import InitResult
from ..requests import Duration
from ..stores.protocols import RetentionStore, SchemaStore
from . import pending_steps

log = logger(__name__)

StepCallback = Callable[[int, str], None]


def initialize(store: SchemaStore, leases: Leases, *, wait: Duration | None = None, timeout: Duration | None = None,
               dry_run: bool = False, on_step: StepCallback | None = None) -> InitResult:
    """Bring the store to this tool's schema version, under the mutex ``mutexctl.schema``.

    Many runners at once: each waits for the mutex in turn; the first applies the missing steps,
    the others then find the store up to date and apply nothing. A store already up to date is
    seen without taking the mutex. ``dry_run`` reports the pending steps and changes nothing.
    Steps whose work was undone (a dropped index) are applied again. A broadcast log kept for
    another time than ``log_retention`` (MongoDB's TTL index is fixed when created) is brought to
    the configured one as well.
    """
    server = store.server_report()
    state = store.schema_state()
    before = state.version if state else 0
    pending = pending_steps(before)
    drift = _drift(store)
    repairs = _repairs(store, before)
    if dry_run or (not pending and drift is None and not repairs):
        return InitResult(before, before, (), server, tuple(s.number for s in pending) + repairs,
                          **_retention(drift))
    applied: list[int] = []
    with hold(leases, leases.request(SCHEMA_MUTEX, timeout=timeout, wait=wait)) as held:
        state = store.schema_state()  # another runner may have finished while we waited
        version = state.version if state else 0
        for number in _repairs(store, version):
            store.apply_schema_step(number)
            applied.append(number)
        for step in pending_steps(version):
            if held.lost:
                break  # leaving the block raises LeaseLostError; the next run goes on from here
            store.apply_schema_step(step.number)
            store.record_schema_step(step.number, leases.node_id, __version__)
            log.info("applied schema step %d: %s", step.number, step.title)
            applied.append(step.number)
            version = step.number
            if on_step is not None:
                on_step(step.number, step.title)
        drift = _drift(store)  # again: another runner may have changed it meanwhile
        if drift is not None and not held.lost and isinstance(store, RetentionStore):
            store.apply_retention()
    return InitResult(before, version, tuple(applied), server, **_retention(drift))


def _repairs(store: SchemaStore, version: int) -> tuple[int, ...]:
    """Steps at or below ``version`` to apply again because part of their work is gone."""
    return tuple(sorted({step for step, _ in store.schema_problems() if step <= version}))


def _retention(drift: tuple[str, int, int] | None) -> dict[str, Any]:
    return {} if drift is None else {"retention": drift[1:], "retention_setting": drift[0]}


def _drift(store: SchemaStore) -> tuple[str, int, int] | None:
    if store.expires_by_ttl and isinstance(store, RetentionStore):
        return store.retention_drift()
    return None
