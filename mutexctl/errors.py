"""Exception hierarchy.

The library raises these and never exits; ``cli/exit_codes.py`` maps each class to one exit status.
Each error subclasses the matching builtin so callers can catch it without importing mutexctl, and
every one pickles (a worker process can raise it to its parent): ``__reduce__`` rebuilds it from its
attributes, whatever its ``__init__`` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import MutexState


def _rebuild(cls: type[MutexctlError], args: tuple[Any, ...], state: dict[str, Any]) -> MutexctlError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class MutexctlError(Exception):
    """Base of every error mutexctl raises on purpose. ``hint`` says how to fix it, when known, in the
    library's words (never a command-line flag). ``remedy`` names that fix (a key of REMEDIES, which
    a front end may say in its own words: the CLI names its flags); ``param``: the argument at fault,
    by its library name, with which the message begins (the CLI shows its flag there instead)."""

    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None, remedy: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None or remedy is None else REMEDIES.get(remedy)
        self.remedy = remedy
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


# What fixes an error, in the library's words; the CLI says each in its own (cli/hints.py).
REMEDIES = {
    "force": "a forced release (with a reason) breaks it, on the record",
    "token-or-force": "release it with the token (fence) it was acquired with, or break it with a forced release "
                      "(with a reason)",
    "stop-or-force": "stop the command (mutexctl then releases it), or break it with a forced release (with a "
                     "reason; the command is stopped at its next renewal)",
    "longer-lease": "use a longer timeout, renew the lease while you work, or run the work under a held lock",
    "same-kind": "every holder of a name must ask for it the same way (the same limit, or shared); wait until they "
                 "are gone, or use another name",
    "token": "pass the token (fence) the acquire returned",
    "wait": "wait for it (a wait that outlasts its lease), or see what holds it",
    "wait-longer": "wait longer, or see what holds it",
    "reason": "give the reason why it is stuck",
    "store-path": "choose a writable path for the store (sqlite:///path/to/file.db)",
    "store-other-file": "use another file for the store",
    "longer-command-lease": "use a timeout of 1s or more",
    "allow-none": "start listeners on the nodes, or send it with no listener expected",
    "recipients": "name fewer nodes, or none to reach every listening node",
}



class UsageError(MutexctlError, ValueError):
    """A malformed argument: a mutex name, a duration, a flag combination, a payload."""

    kind = "usage"


class ConfigError(MutexctlError, ValueError):
    """The parameter file, an environment variable or the store URL is wrong."""

    kind = "config"


class StoreMissingError(ConfigError):
    """A store that was to be read, not made, does not exist (``if_missing="fail"``): nothing was created."""


class LockHeldError(MutexctlError):
    """The mutex is held by a live lease. ``state`` is the holder's record when the store returned it."""

    kind = "held"

    def __init__(self, mutex_id: str, state: MutexState | None = None, *, message: str | None = None,
                 hint: str | None = None, remedy: str | None = None, asked: str | None = None) -> None:
        self.mutex_id = mutex_id
        self.state = state
        self.asked = asked  # the kind of hold that was refused (exclusive, shared, semaphore), if known
        super().__init__(message or _held_message(mutex_id, state, asked), hint=hint, remedy=remedy)


class DuplicateMutexError(LockHeldError):
    """Several documents carry the mutex's name (another service made copies before the unique
    index existed): which one is the lease cannot be told, so mutexctl takes none of them."""

    kind = "duplicate"

    def __init__(self, mutex_id: str, state: MutexState | None = None, *, verb: str = "take") -> None:
        problem = state.problem if state is not None and state.problem else "several documents carry this name"
        super().__init__(mutex_id, state, message=f"will not {verb} '{mutex_id}': {problem}",
                         hint="see README.md, 'Sharing mutexes with other services'")


class HeldOnHostError(LockHeldError):
    """A process on this host holds the mutex in a store file that the path no longer names (it was
    removed or replaced): the new file looks free, but the old lease's holder still runs."""

    kind = "held"


class WaitTimeoutError(LockHeldError, TimeoutError):
    """The wait for a mutex ended before it became free."""

    kind = "timeout"


class NotOwnerError(MutexctlError, PermissionError):
    """Release or renew of a lease this node (or this token) does not hold."""

    kind = "not_owner"

    def __init__(self, mutex_id: str, message: str, state: MutexState | None = None,
                 *, hint: str | None = None, remedy: str | None = None) -> None:
        self.mutex_id = mutex_id
        self.state = state
        super().__init__(message, hint=hint, remedy=remedy)


class LimitConflictError(MutexctlError, ValueError):
    """The mutex is held in another way than asked: a semaphore of another limit, shared holds
    asked of a semaphore, or a semaphore's slot asked of shared holders. Holders of one name must
    agree (an exclusive lease conflicts with none: it waits for them, they wait for it)."""

    kind = "limit_conflict"

    def __init__(self, message: str, state: object = None, *, hint: str | None = None,
                 remedy: str | None = None) -> None:
        super().__init__(message, hint=hint, remedy=remedy)
        self.state = state


class LeaseExpiredError(NotOwnerError):
    """Our lease ran past its timeout; someone else may have held the mutex since."""

    kind = "expired"


class LeaseLostError(MutexctlError):
    """A held lease was lost (renewal refused, or the store unreachable for too long)."""

    kind = "lease_lost"


class ShutdownError(MutexctlError):
    """The Service is shutting down (closed, or a signal came): it takes no new lease."""

    kind = "shutdown"


class SchemaError(MutexctlError):
    """The store's schema is missing or at another version."""

    kind = "schema"


class StoreError(MutexctlError):
    """The store failed in a way that is not a network outage. The driver error is ``__cause__``."""

    kind = "store"


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached or opened right now."""

    kind = "store_unavailable"


class OutputError(MutexctlError, OSError):
    """A file mutexctl was asked to write (a metrics text file) could not be written: a full disk, an
    I/O error. Nothing was left half-written."""

    kind = "output"


class CommandStartError(MutexctlError):
    """A command to run under a lease could not be started; ``status`` is a shell's code for it
    (126 not executable, 127 not found)."""

    kind = "command_start"

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class NotHeldError(MutexctlError):
    """``status --held``: no mutex the command asked about is held (as ``grep`` finding nothing)."""

    kind = "not_held"


class MessageNotFoundError(MutexctlError, LookupError):
    """No message with that id in the broadcast log (never sent, or past its retention)."""

    kind = "not_found"


class BroadcastError(MutexctlError):
    """A broadcast's expected nodes did not all answer with status 0 (see the subclasses)."""

    kind = "broadcast"


class HandlerFailedError(BroadcastError):
    """A listener's handler failed (non-zero status) on some expected node."""

    kind = "handler_failed"


class NodesSilentError(BroadcastError):
    """Some expected nodes never acknowledged the message."""

    kind = "silent"


class NoListenersError(BroadcastError):
    """A broadcast that should be answered found no node to answer it (nothing was sent)."""

    kind = "no_listeners"


def _holders(state: MutexState) -> str:
    nodes = list(dict.fromkeys(slot.node for slot in state.slots))
    return ", ".join(nodes) if len(nodes) <= 3 else f"{', '.join(nodes[:2])} and {len(nodes) - 2} more"


def _held_message(mutex_id: str, state: MutexState | None, asked: str | None = None) -> str:
    if state is not None and state.kind != "exclusive" and state.slots:
        from .models import human_ms

        count, plural = len(state.slots), "s" if len(state.slots) > 1 else ""
        if state.kind == "semaphore":
            held = f"{count} of its {state.limit} slots held" if count < (state.limit or 0) else \
                f"all {state.limit} slots held"
            how = f"'{mutex_id}' is a semaphore with {held} (by {_holders(state)})"
        else:
            how = f"'{mutex_id}' has {count} shared holder{plural} ({_holders(state)})"
        if asked == "exclusive":  # it waits for every slot, not the next one
            last = max(state.slots, key=lambda slot: slot.remaining_ms)
            return how + f": an exclusive hold waits until every {'slot' if state.kind == 'semaphore' else 'holder'}" \
                f" has ended; the last ends in {human_ms(last.remaining_ms)} ({last.node}) unless renewed"
        if state.writer_waiting:
            return how + f" and {state.writer_waiting} waits to take it exclusively: new " \
                f"{'slots' if state.kind == 'semaphore' else 'shared holds'} wait for it"
        soonest = min(state.slots, key=lambda slot: slot.remaining_ms)
        return how + f"; the next slot ends in {human_ms(soonest.remaining_ms)} ({soonest.node}) unless renewed"
    if state is not None and state.waiters and state.state in ("free", "expired"):
        from .models import human_ms

        first = state.waiters[0]
        count = len(state.waiters)
        return (f"mutex '{mutex_id}' is {state.state}, but {count} waiting process{'es' if count > 1 else ''} came "
                f"first and {'are' if count > 1 else 'is'} served in order (next: {first.node}, waiting "
                f"{human_ms(first.waited_ms)})")
    if state is None or not state.taken_by:
        return f"mutex '{mutex_id}' is held by another node"
    text = f"mutex '{mutex_id}' is held by {state.taken_by}"
    if state.holder and state.holder.host:
        text += f" (host {state.holder.host}, pid {state.holder.pid})"
    if state.foreign:
        text += " (another service's lease)"
    if state.remaining_ms is not None:
        from .models import human_ms

        text += f", lease ends in {human_ms(state.remaining_ms)}"
    elif state.taken:
        text += f"; its expiry is unknown ({state.problem}): it is never judged expired, only a forced release " \
                "frees it"
    return text
