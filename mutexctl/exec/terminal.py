"""The terminal, when mutexctl runs in front of one: a command under a lease is a job, as a shell's is."""

from __future__ import annotations

import contextlib
import os
import signal


def controlling_tty() -> int | None:
    """Which of fds 0-2 is our controlling terminal, if any.

    On it the command is a job, as a shell would run it: its group becomes the foreground (without
    that, a command that reads the terminal, a prompt or an editor, is stopped by SIGTTIN since its
    group is not ours) and a stop from the terminal suspends mutexctl with it.
    """
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                os.tcgetpgrp(fd)  # fails (ENOTTY) on a terminal that is not our controlling one
                return fd
        except OSError:
            continue
    return None


def foreground(fd: int) -> int | None:
    """The terminal's foreground process group, None if the terminal is gone."""
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None


def take_terminal(fd: int) -> None:
    """Make the caller's group the terminal's foreground: the command's, between its fork and exec."""
    with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
        set_foreground(fd, os.getpgrp())


def set_foreground(fd: int, pgid: int) -> None:
    # A background group changing the foreground gets SIGTTOU unless it ignores it, as shells do.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgid)
    finally:
        signal.signal(signal.SIGTTOU, previous)
