"""The reaper: a two-line ``sh`` in a session of its own that SIGKILLs a command's process group
when mutexctl dies, even by SIGKILL, so no critical section outlives the process that renews its lease.

It reads a pipe that only mutexctl holds open: mutexctl's death closes it, the read hits EOF, and the
group is killed; a normal end writes a line first. It is a separate program, not a fork of mutexctl,
so ``pkill -f 'mutexctl acquire'`` cannot kill the watcher along with the watched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

NORMAL_END = b"done\n"
# `read` fails only at EOF, i.e. when every holder of the pipe's write end (just mutexctl) is gone.
_SCRIPT = "trap '' INT TERM HUP QUIT USR1 USR2 PIPE; read -r _ || kill -s KILL -- -\"$1\" 2>/dev/null"


class Reaper:
    """The watcher of one process group."""

    def __init__(self, pgid: int) -> None:
        read_end, self._pipe = os.pipe()
        try:
            self._process = subprocess.Popen(["/bin/sh", "-c", _SCRIPT, "mutexctl-reaper", str(pgid)],
                                             stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             start_new_session=True)
        except OSError:
            os.close(self._pipe)
            raise
        finally:
            os.close(read_end)

    def dismiss(self, *, kill_group: bool) -> None:
        """Let the reaper go; with ``kill_group`` it SIGKILLs what is left of the group first."""
        if self._pipe >= 0:
            if not kill_group:
                with contextlib.suppress(BrokenPipeError):
                    os.write(self._pipe, NORMAL_END)
            os.close(self._pipe)  # EOF without the normal-end line means: kill the group
            self._pipe = -1
        self._process.wait()
