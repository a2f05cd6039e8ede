"""The one table from outcomes to exit statuses. README.md and man/mutexctl.1 repeat it (a test checks)."""

from __future__ import annotations

from ..errors import (
    CommandStartError,
    ConfigError,
    HandlerFailedError,
    LeaseLostError,
    LimitConflictError,
    LockHeldError,
    MessageNotFoundError,
    MutexctlError,
    NodesSilentError,
    NoListenersError,
    NotHeldError,
    NotOwnerError,
    OutputError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
    UsageError,
)

SUCCESS = 0
CONFLICT = 1
SILENT = 1  # broadcast: expected nodes stayed silent (not changed by --conflict-exit-code)
USAGE = 2
NOT_OWNER = 3
SCHEMA = 4
HANDLER_FAILED = 5
LIMIT_CONFLICT = 6
UNAVAILABLE = 69
INTERNAL = 70
CANNOT_WRITE = 73  # sysexits' EX_CANTCREAT, as flock(1) uses it
LEASE_LOST = 75
CONFIG = 78
INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
PIPE_CLOSED = 141  # the reader of stdout went away (`| head -1`): 128 + SIGPIPE, as `yes | head` reports

EXIT_STATUS_TABLE: tuple[tuple[str, str], ...] = (
    ("0", "success"),
    ("1", "lock held by another node, or the wait timed out (-E/--conflict-exit-code N changes it); "
          "status --held: none is held; broadcast: nodes stayed silent, no node listens (--wait-acks; nothing "
          "sent), or the message is not in the log; doctor: a check warned or failed"),
    ("2", "usage error (a malformed or oversized flag, name, duration, token, payload; a lease too short to run "
          "a command)"),
    ("3", "release/renew: not the owner, the lease already ended, or a plain release of a lease that a running "
          "command holds (exec mode)"),
    ("4", "schema missing or at another version"),
    ("5", "broadcast: a handler failed on some node (--wait-acks, broadcast status)"),
    ("6", "the mutex is held in another way than asked: a semaphore of another --limit, --shared against a "
          "semaphore, or the reverse"),
    ("69", "store unavailable (unreachable, read-only for a write, disk full)"),
    ("70", "internal error (traceback only with --debug)"),
    ("73", "an output file could not be written (metrics --textfile: disk full, I/O error); nothing half-written "
           "is left"),
    ("75", "lease lost while the command ran (or a leader's term, elect); the command was stopped"),
    ("78", "configuration error (parameter file, environment, store URL and its options, a store file that is "
          "not a database, another program's or a damaged one, a named store file that does not exist for a "
          "reading command, refused credentials; a metrics file that is not a regular file)"),
    ("126, 127", "exec mode: the command could not be run (not executable, not found)"),
    ("130", "interrupted (Ctrl-C); 129 and 143 for SIGHUP and SIGTERM while waiting"),
    ("141", "the reader of stdout went away (a closed pipe, as in '| head -1'): 128 + SIGPIPE, quietly"),
    ("child's / 128+N", "exec mode: the command's own status, or 128+N if signal N killed it"),
)

# Most specific class first: the first isinstance match wins.
_BY_ERROR: tuple[tuple[type[MutexctlError], int], ...] = (
    (LockHeldError, CONFLICT),
    (LimitConflictError, LIMIT_CONFLICT),
    (HandlerFailedError, HANDLER_FAILED),
    (NodesSilentError, SILENT),
    (NoListenersError, SILENT),
    (MessageNotFoundError, SILENT),
    (NotHeldError, SILENT),
    (UsageError, USAGE),
    (NotOwnerError, NOT_OWNER),
    (SchemaError, SCHEMA),
    (StoreUnavailableError, UNAVAILABLE),
    (StoreError, INTERNAL),
    (LeaseLostError, LEASE_LOST),
    (ConfigError, CONFIG),
    (OutputError, CANNOT_WRITE),
)


def exit_code_for(error: MutexctlError, *, conflict_code: int = CONFLICT) -> int:
    if isinstance(error, CommandStartError):  # a shell's 126/127
        return error.status
    if isinstance(error, LockHeldError):
        return conflict_code
    for cls, code in _BY_ERROR:
        if isinstance(error, cls):
            return code
    return INTERNAL
