"""Running a command under a lease: its own process group, forwarded signals, and a guaranteed kill.

The command gets a process group of its own so that one signal reaches everything it started
(``sh -c 'sleep 100 & wait'`` included). A *reaper*, a two-line ``sh`` in a session of its own,
reads a pipe that only mutexctl holds open: if mutexctl dies, even by SIGKILL, the read hits EOF and
the reaper SIGKILLs the group, so no critical section outlives the process that renews its lease.
It is a separate program, not a fork of mutexctl, so ``pkill -f 'mutexctl acquire'`` cannot kill
the watcher along with the watched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence

from .errors import MutexctlError

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_NORMAL_END = b"done\n"
# `read` fails only at EOF, i.e. when every holder of the pipe's write end (just mutexctl) is gone.
_REAPER_SCRIPT = "trap '' INT TERM HUP QUIT USR1 USR2 PIPE; read -r _ || kill -s KILL -- -\"$1\" 2>/dev/null"


class CommandStartError(MutexctlError):
    """The command could not be started; ``status`` is the shell's code for it (126 or 127)."""

    kind = "command_start"

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class CommandGroup:
    """One command and everything it starts, in a process group led by the command."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._reaper_pipe = -1
        self._kill_timer: threading.Timer | None = None
        self._pending: list[int] = []  # signals that arrived before the command existed
        self._terminal: int | None = None  # the tty handed to the command's group, to take back after

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the command (exit statuses 126/127 as a shell gives them) and its reaper."""
        try:
            self.process = subprocess.Popen(self.argv, env=self.env, process_group=0)
        except FileNotFoundError:
            raise CommandStartError(f"command not found: {self.argv[0]}", 127,
                                    hint="check the spelling, or give the full path") from None
        except PermissionError:
            raise CommandStartError(f"command not executable: {self.argv[0]}", 126) from None
        except OSError as exc:
            raise CommandStartError(f"cannot run {self.argv[0]}: {exc.strerror}", 126) from None
        try:
            self._reaper, self._reaper_pipe = _start_reaper(self.pgid)
        except OSError as exc:  # without a watcher the command must not run at all
            self.signal(signal.SIGKILL)
            self.process.wait()
            raise CommandStartError(f"cannot start the process-group watcher /bin/sh: {exc.strerror}", 126) from None
        self._terminal = _hand_terminal_to(self.pgid)
        for signum in self._pending:
            self.signal(signum)

    def signal(self, signum: int) -> None:
        if self.process is None:
            self._pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def stop(self, grace_s: float) -> None:
        """SIGTERM the whole group now and SIGKILL it after ``grace_s``; safe to call from any thread."""
        self.signal(signal.SIGTERM)
        if self._kill_timer is None:
            self._kill_timer = threading.Timer(grace_s, self.signal, args=(signal.SIGKILL,))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """Pass INT/TERM/HUP/QUIT/USR1/USR2 sent to mutexctl on to the command's group.

        Enter it before ``start``: a signal that arrives while the command is being started is held
        and delivered as soon as the group exists, instead of killing mutexctl with the lease held.
        """
        previous = {sig: signal.signal(sig, lambda signum, _frame: self.signal(signum)) for sig in FORWARDED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait(self) -> int:
        """The command's exit status as a shell reports it: its code, or 128+N if signal N killed it."""
        assert self.process is not None
        code = self.process.wait()  # PEP 475: retried after each forwarded signal's handler runs
        return 128 - code if code < 0 else code

    def finish(self, *, kill_rest: bool) -> None:
        """Take the terminal back and dismiss the reaper; with ``kill_rest`` it SIGKILLs what is left."""
        if self._terminal is not None:
            _set_foreground(self._terminal, os.getpgrp())
            self._terminal = None
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._reaper_pipe >= 0:
            if not kill_rest:
                with contextlib.suppress(BrokenPipeError):
                    os.write(self._reaper_pipe, _NORMAL_END)
            os.close(self._reaper_pipe)  # EOF without the normal-end line means: kill the group
            self._reaper_pipe = -1
        if self._reaper is not None:
            self._reaper.wait()


def _hand_terminal_to(pgid: int) -> int | None:
    """Make the command's group the terminal's foreground group, as a shell does for a job.

    Without it, a command that reads the terminal (a prompt, an editor) is stopped by SIGTTIN,
    since its group is not ours. Only when mutexctl itself is in the foreground of a terminal.
    The command may have read before the hand-over and been stopped: SIGCONT resumes it.
    """
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                _set_foreground(fd, pgid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGCONT)
                return fd
        except OSError:
            continue
    return None


def _set_foreground(fd: int, pgid: int) -> None:
    # A background group changing the foreground gets SIGTTOU unless it ignores it, as shells do.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
            os.tcsetpgrp(fd, pgid)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def run_handler(argv: Sequence[str], stdin: bytes, env: Mapping[str, str]) -> int:
    """Run a broadcast handler to its end; its status as a shell gives it (126/127 if it cannot start).

    It gets a process group of its own, so a Ctrl-C or SIGTERM meant for the listener lets the
    running handler finish (the listener then stops) instead of killing it midway.
    """
    try:
        done = subprocess.run(list(argv), input=stdin, env=dict(env), process_group=0, check=False)
    except FileNotFoundError:
        return 127
    except OSError:
        return 126
    return 128 - done.returncode if done.returncode < 0 else done.returncode


def _start_reaper(pgid: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start the watcher of group ``pgid``; returns its pid and the pipe end that keeps it quiet."""
    read_end, write_end = os.pipe()
    try:
        reaper = subprocess.Popen(["/bin/sh", "-c", _REAPER_SCRIPT, "mutexctl-reaper", str(pgid)],
                                  stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
    finally:
        os.close(read_end)
    return reaper, write_end
