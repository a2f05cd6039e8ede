"""The gate a command waits behind until its watcher exists.

Between starting a command and starting its watcher there is a moment when nothing would stop the
command if mutexctl died (a SIGKILL, the OOM killer): it would run on, unwatched, past its lease.
So the command starts as a small ``/bin/sh`` that reads one line from a pipe only mutexctl can
write, then ``exec``s the command in its own place (same pid, same process group). mutexctl opens
the gate once the watcher runs; if mutexctl dies first, the read meets end-of-file and the command
never starts (status ``NEVER_OPENED``).

``exec`` in the gate searches PATH as the shell does, which would turn "not found" and "not
executable" into a shell's message on stderr: ``find_program`` checks first, so the caller still
reports them as its own 127 and 126.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Mapping, Sequence

NEVER_OPENED = 125  # the gate's status when mutexctl died before opening it
NAME = "lease-gate"  # its $0 in ps until the exec (the command replaces it)
# $1 the fd to read; then the command. The fd is closed for the command. dash takes one-digit fds
# only; bash takes any (read -u, exec {var}<&-).
_SH = 'read -r _ <&$1 || exit 125; fd=$1; shift; eval "exec $fd<&-"; exec "$@"'
_BASH = 'read -r -u "$1" _ || exit 125; fd=$1; shift; exec {fd}<&-; exec "$@"'


class Gate:
    """One gate: ``argv(command)`` is what to start; ``open()`` lets the command run.

    Without bash and with descriptors 3-9 all taken there is no shell that could read the pipe: the
    command then starts ungated (``argv`` returns it as it is), guarded from its watcher's start on.
    """

    def __init__(self) -> None:
        read_end, self._write = os.pipe()
        # Not 0-2: those are the command's own (a pipe can get them when mutexctl's are closed).
        self._read = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(read_end)
        bash = shutil.which("bash") if self._read > 9 else None
        if bash is not None:
            self._shell = [bash, "-c", _BASH]
        elif self._read <= 9:
            self._shell = ["/bin/sh", "-c", _SH]
        else:
            self._shell = []
            self.close()

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptor the started process must inherit (``pass_fds``)."""
        return (self._read,) if self._read >= 0 else ()

    def argv(self, command: Sequence[str]) -> list[str]:
        if not self._shell:
            return list(command)
        return [*self._shell, NAME, str(self._read), *command]

    def started(self) -> None:
        """The process exists: only mutexctl holds the write end now."""
        if self._read >= 0:
            os.close(self._read)
            self._read = -1

    def open(self) -> None:
        """Let the command run (a command that was already ended is no error)."""
        self.started()
        if self._write >= 0:
            with contextlib.suppress(BrokenPipeError):
                os.write(self._write, b"\n")
            self.close()

    def close(self) -> None:
        """Without ``open``: the command never runs."""
        self.started()
        if self._write >= 0:
            os.close(self._write)
            self._write = -1


def find_program(program: str, env: Mapping[str, str]) -> None:
    """Raise what ``exec`` of ``program`` would: FileNotFoundError, or PermissionError when it is
    found but cannot be run (not executable, a directory); search the PATH of ``env`` as a shell does."""
    if "/" in program:
        candidates = [program]
    else:
        candidates = [os.path.join(entry or ".", program) for entry in env.get("PATH", os.defpath).split(os.pathsep)]
    found = False
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
        found = found or os.path.isfile(path) or ("/" in program and os.path.exists(path))
    if found:
        raise PermissionError(13, "Permission denied", program)
    raise FileNotFoundError(2, "No such file or directory", program)

