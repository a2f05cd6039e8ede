"""The watcher: a small shell in a session of its own that stops a command's process group when
mutexctl cannot — so no critical section outlives its lease, whatever happens to mutexctl.

- mutexctl dies (even by SIGKILL): the pipe that only mutexctl holds open hits EOF, and the watcher
  SIGKILLs the group;
- mutexctl is frozen (SIGSTOP, a debugger, a throttled or swapped-out process) past the lease's
  local deadline: the watcher holds that deadline, which mutexctl moves after every renewal, and when
  it passes unmoved it stops the group itself (TERM, then KILL after the grace);
- a normal end writes ``done``: the watcher leaves the group alone.

It is a separate program (bash, for ``read -t``; sh, without the deadline, where there is no bash),
not a fork of mutexctl, and nothing in its command line says "mutexctl": ``pkill -f mutexctl``, what
an operator types, cannot kill the watcher along with the watched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

NORMAL_END = b"done\n"
NAME = "lease-watch"  # its $0 in ps: no "mutexctl" in it
# $1 pgid, $2 grace (s), $3 seconds to the deadline. Each line read is a new deadline (seconds from now)
# or "done". read fails at EOF (status 1: mutexctl is gone) or at the deadline (status > 128).
_BASH = """trap '' INT TERM HUP QUIT USR1 USR2 PIPE TSTP TTIN TTOU
left=$3
while :; do
  if read -r -t "$left" line; then
    if [ "$line" = done ]; then exit 0; fi
    left=$line
  elif [ $? -gt 128 ]; then
    kill -s TERM -- "-$1" 2>/dev/null; kill -s CONT -- "-$1" 2>/dev/null
    sleep "$2"; kill -s KILL -- "-$1" 2>/dev/null; exit 0
  else
    kill -s KILL -- "-$1" 2>/dev/null; exit 0
  fi
done"""
_SH = """trap '' INT TERM HUP QUIT USR1 USR2 PIPE TSTP TTIN TTOU
while read -r line; do [ "$line" = done ] && exit 0; done
kill -s KILL -- "-$1" 2>/dev/null"""


class Watcher:
    """The watcher of one process group, holding the deadline ``left_s`` seconds from now."""

    def __init__(self, pgid: int, *, grace_s: float, left_s: float, keep_fds: tuple[int, ...] = ()) -> None:
        """``keep_fds``: descriptors the watcher holds for as long as it lives (the lease's host guard,
        which must outlive mutexctl while the command may still run)."""
        bash = shutil.which("bash")
        self.holds_deadline = bash is not None
        argv = [bash, "-c", _BASH, NAME] if bash else ["/bin/sh", "-c", _SH, NAME]
        read_end, self._pipe = os.pipe()
        try:
            self._process = subprocess.Popen([*argv, str(pgid), f"{grace_s:.3f}", f"{max(0.0, left_s):.3f}"],
                                             stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             start_new_session=True, pass_fds=keep_fds)
        except OSError:
            os.close(self._pipe)
            raise
        finally:
            os.close(read_end)

    def extend(self, left_s: float) -> None:
        """Move the deadline to ``left_s`` seconds from now (after a renewal)."""
        if self._pipe >= 0 and self.holds_deadline:
            with contextlib.suppress(OSError):
                os.write(self._pipe, f"{max(0.0, left_s):.3f}\n".encode())

    def dismiss(self, *, kill_group: bool, group_gone: bool = False) -> None:
        """Let the watcher go; with ``kill_group`` it SIGKILLs what is left of the group first.
        ``group_gone``: the caller has already ended the group, so a watcher caught in its own
        TERM-then-KILL grace is ended too rather than waited for."""
        if self._pipe >= 0:
            if not kill_group:
                with contextlib.suppress(BrokenPipeError):
                    os.write(self._pipe, NORMAL_END)
            os.close(self._pipe)  # EOF without the normal-end line means: kill the group
            self._pipe = -1
        if group_gone:
            try:
                self._process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process.wait()
