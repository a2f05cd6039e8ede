"""Start a command as exec mode (``group``) or a broadcast handler (``handler``) does, and SIGKILL
ourselves at the moment the command exists but its watcher does not yet.

Usage: start_then_die.py group|handler gated|ungated MARKER PIDFILE
The command would create MARKER. PIDFILE gets the started process's pid. ``ungated`` is the control:
the gate is left out, so the command runs although nothing watches it.
"""

import os
import signal
import sys
from pathlib import Path

from mutexctl.exec import gate, group, handler

mode, variant, marker, pid_file = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])


def die_before_watching(pgid: int, **_kwargs: object) -> None:
    pid_file.write_text(str(pgid))
    os.kill(os.getpid(), signal.SIGKILL)


if variant == "ungated":
    gate.Gate.argv = lambda self, command: list(command)  # type: ignore[method-assign]
group.Watcher = die_before_watching  # type: ignore[assignment,misc]
handler.Watcher = die_before_watching  # type: ignore[assignment,misc]
command = ["sh", "-c", f"sleep 0.2; touch {marker}"]
if mode == "handler":
    handler.run_handler(command, b"", dict(os.environ))
else:
    group.CommandGroup(command, dict(os.environ)).start(grace_s=1.0, left_s=60.0)
