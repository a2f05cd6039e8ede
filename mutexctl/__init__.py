"""mutexctl: named leases (mutexes with a timeout) on a shared store, for CLIs and services.

    import mutexctl
    svc = mutexctl.connect()
    if svc.P("module-service-action", "node-7", 1000):
        try: ...
        finally: svc.V("module-service-action")

The names below are loaded when first used (PEP 562), so ``import mutexctl`` itself costs almost
nothing: a service pays for the parts it touches, and never for typer, rich or pymongo unless it
uses the CLI or a MongoDB store.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # not typing's: importing typing would cost more than the rest of this module
if TYPE_CHECKING:
    from typing import Any

    from .config import Settings, load_settings
    from .errors import (
        BroadcastError,
        CommandStartError,
        ConfigError,
        DuplicateMutexError,
        HandlerFailedError,
        HeldOnHostError,
        LeaseExpiredError,
        LeaseLostError,
        LimitConflictError,
        LockHeldError,
        MutexctlError,
        NodesSilentError,
        NoListenersError,
        NotOwnerError,
        OutputError,
        SchemaError,
        ShutdownError,
        StoreError,
        StoreUnavailableError,
        UsageError,
        WaitTimeoutError,
    )
    from .keeper import HeldLease, LeaseKeeper
    from .models import (
        Ack,
        AckReport,
        ForcedRelease,
        Holder,
        InitResult,
        Lease,
        Message,
        MutexState,
        NodeInfo,
        OnceMarker,
        Overview,
        RunResult,
        SchemaState,
        SlotHolder,
    )
    from .service import Service, connect
    from .stores.steps import SCHEMA_VERSION

_WHERE = {
    "Settings": "config", "load_settings": "config",
    "HeldLease": "keeper", "LeaseKeeper": "keeper",
    "Service": "service", "connect": "service",
    "SCHEMA_VERSION": "stores.steps",
    **dict.fromkeys(("Ack", "AckReport", "ForcedRelease", "Holder", "InitResult", "Lease", "Message", "MutexState",
                     "NodeInfo", "OnceMarker", "Overview", "SlotHolder", "RunResult", "SchemaState"), "models"),
    **dict.fromkeys(("BroadcastError", "CommandStartError", "ConfigError", "DuplicateMutexError",
                     "HandlerFailedError", "HeldOnHostError", "LeaseExpiredError", "LeaseLostError",
                     "LimitConflictError", "LockHeldError", "MutexctlError", "NoListenersError", "NodesSilentError",
                     "NotOwnerError", "OutputError", "SchemaError", "ShutdownError", "StoreError",
                     "StoreUnavailableError", "UsageError", "WaitTimeoutError"), "errors"),
}

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "AckReport",
    "BroadcastError",
    "CommandStartError",
    "ConfigError",
    "DuplicateMutexError",
    "ForcedRelease",
    "HandlerFailedError",
    "HeldLease",
    "HeldOnHostError",
    "Holder",
    "InitResult",
    "Lease",
    "LeaseExpiredError",
    "LeaseKeeper",
    "LeaseLostError",
    "LimitConflictError",
    "LockHeldError",
    "Message",
    "MutexState",
    "MutexctlError",
    "NoListenersError",
    "NodeInfo",
    "NodesSilentError",
    "NotOwnerError",
    "OnceMarker",
    "OutputError",
    "Overview",
    "RunResult",
    "SchemaError",
    "SchemaState",
    "Service",
    "Settings",
    "ShutdownError",
    "SlotHolder",
    "StoreError",
    "StoreUnavailableError",
    "UsageError",
    "WaitTimeoutError",
    "__version__",
    "connect",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mutexctl' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next use is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
