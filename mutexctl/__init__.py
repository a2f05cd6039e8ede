"""mutexctl: named leases (mutexes with a timeout) on a shared store, for CLIs and services.

    import mutexctl
    svc = mutexctl.connect()
    if svc.P("module-service-action", "node-7", 1000):
        try: ...
        finally: svc.V("module-service-action")
"""

from __future__ import annotations

from ._version import __version__
from .config import Settings, load_settings
from .errors import (ConfigError, DuplicateMutexError, LeaseExpiredError, LeaseLostError, LockHeldError, MutexctlError,
                     NotOwnerError, SchemaError, StoreError, StoreUnavailableError, UsageError, WaitTimeoutError)
from .models import ForcedRelease, Holder, Lease, MutexState, Overview
from .mutex import HeldLease, LeaseKeeper, RunResult, Service, connect
from .schema import SCHEMA_VERSION, InitResult, SchemaState


__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "DuplicateMutexError",
    "ForcedRelease",
    "HeldLease",
    "Holder",
    "InitResult",
    "Lease",
    "LeaseExpiredError",
    "LeaseKeeper",
    "LeaseLostError",
    "LockHeldError",
    "MutexState",
    "MutexctlError",
    "NotOwnerError",
    "Overview",
    "RunResult",
    "SchemaError",
    "SchemaState",
    "Service",
    "Settings",
    "StoreError",
    "StoreUnavailableError",
    "UsageError",
    "WaitTimeoutError",
    "__version__",
    "connect",
    "load_settings",
]
