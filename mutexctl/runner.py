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
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from .errors import MutexctlError

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_NORMAL_END = b"done\n"
_JOB_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)  # the stops a terminal causes
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
        self._tty: int | None = None  # our controlling terminal (an fd of 0-2), if any
        self._suspended = False  # stopped from the terminal together with mutexctl
        self._stop_asked = False  # a SIGTSTP was passed on to the command

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the command (exit statuses 126/127 as a shell gives them) and its reaper."""
        self._tty = _controlling_tty()
        # On a terminal we are in front of, the command takes the terminal itself before its exec,
        # as a shell's child does: otherwise it could read (and be stopped by SIGTTIN) before we
        # hand it over, and a Ctrl-Z in that moment would be lost.
        in_front = self._tty is not None and self._foreground() == os.getpgrp()
        extra = {"preexec_fn": functools.partial(_take_terminal, self._tty)} if in_front else {}
        try:
            self.process = subprocess.Popen(self.argv, env=self.env, process_group=0, **extra)
        except OSError as exc:
            if in_front:  # the child took the terminal, then failed to exec
                _take_terminal(self._tty)  # type: ignore[arg-type]
            raise _start_error(self.argv[0], exc) from None
        if self._tty is not None:
            self._pass_foreground(os.getpgrp(), self.pgid)  # if the command could not take it
        try:
            self._reaper, self._reaper_pipe = _start_reaper(self.pgid)
        except OSError as exc:  # without a watcher the command must not run at all
            self.signal(signal.SIGKILL)
            self.process.wait()
            self.finish(kill_rest=True)
            raise CommandStartError(f"cannot start the process-group watcher /bin/sh: {exc.strerror}", 126) from None
        for signum in self._pending:
            self.signal(signum)

    def signal(self, signum: int) -> None:
        if signum == signal.SIGTSTP:
            self._stop_asked = True
        if self.process is None:
            self._pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def stop(self, grace_s: float) -> None:
        """SIGTERM the whole group now and SIGKILL it after ``grace_s``; safe to call from any thread.

        SIGCONT follows the SIGTERM (as a shell's ``kill`` does for a stopped job), so a command
        that someone stopped can still clean up within the grace.
        """
        self.signal(signal.SIGTERM)
        if not self._suspended:  # a job we suspended gets SIGKILL instead: it must not run again
            self.signal(signal.SIGCONT)
        if self._kill_timer is None:
            self._kill_timer = threading.Timer(grace_s, self.signal, args=(signal.SIGKILL,))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """Pass INT/TERM/HUP/QUIT/USR1/USR2 (and TSTP) sent to mutexctl on to the command's group.

        Enter it before ``start``: a signal that arrives while the command is being started is held
        and delivered as soon as the group exists, instead of killing mutexctl with the lease held.
        """
        forwarded = (*FORWARDED_SIGNALS, signal.SIGTSTP)  # a Ctrl-Z that reached us first stops the command
        previous = {sig: signal.signal(sig, lambda signum, _frame: self.signal(signum)) for sig in forwarded}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait(self, may_resume: Callable[[], bool] = lambda: True) -> int:
        """The command's exit status as a shell reports it: its code, or 128+N if signal N killed it.

        On a terminal the command is a job: when Ctrl-Z (or SIGTTIN/SIGTTOU) stops it, mutexctl
        takes the terminal back and stops itself with the same signal, so the shell sees the job
        stopped. When continued (``fg``/``bg``) it resumes the command only if ``may_resume()``
        (the lease cannot have expired meanwhile); otherwise the stopped group is SIGKILLed
        before it runs another instruction without the lease. Without a terminal a stop is left
        alone (whoever sent SIGSTOP continues it) and the lease is renewed meanwhile.
        """
        assert self.process is not None
        while True:
            _, status = os.waitpid(self.pgid, os.WUNTRACED)  # PEP 475: retried after forwarded signals
            if not os.WIFSTOPPED(status):
                code = self.process.returncode = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            if self._tty is None:  # not a job: a stop is for whoever sent it to undo
                continue
            signum, in_front = os.WSTOPSIG(status), self._foreground() == self.pgid
            if self._stop_asked:  # Ctrl-Z reached us, not the command (before the hand-over)
                signum = signal.SIGTSTP
            elif signum in (signal.SIGTTIN, signal.SIGTTOU) and in_front:
                self.signal(signal.SIGCONT)  # it used the terminal just before the hand-over: go on
                continue
            elif signum not in _JOB_STOPS and not in_front:
                continue  # a background job's kill -STOP: for whoever sent it to undo
            # As a shell treats its foreground job's stop (an editor catches TSTP, then stops with STOP).
            self._stop_asked = False
            self._suspend(signum, may_resume)

    def _suspend(self, signum: int, may_resume: Callable[[], bool]) -> None:
        self._suspended = True
        try:
            self._pass_foreground(self.pgid, os.getpgrp())
            # Stop this process (every thread) until the shell continues it. SIGTSTP is forwarded
            # while the command runs: its own action comes back for this one signal.
            previous = signal.signal(signum, signal.SIG_DFL) if signum != signal.SIGSTOP else None
            try:
                os.kill(os.getpid(), signum)
            finally:
                if previous is not None:
                    signal.signal(signum, previous)
            if not may_resume():
                self.signal(signal.SIGKILL)
                return
            self._pass_foreground(os.getpgrp(), self.pgid)  # after `fg`, not after `bg`
            self.signal(signal.SIGCONT)
        finally:
            self._suspended = False

    def _pass_foreground(self, owner: int, to: int) -> None:
        """Make ``to`` the terminal's foreground group if ``owner`` is it now."""
        assert self._tty is not None
        if self._foreground() == owner:
            with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
                _set_foreground(self._tty, to)

    def _foreground(self) -> int | None:
        assert self._tty is not None
        try:
            return os.tcgetpgrp(self._tty)
        except OSError:
            return None

    def finish(self, *, kill_rest: bool) -> None:
        """Take the terminal back and dismiss the reaper; with ``kill_rest`` it SIGKILLs what is left."""
        if self._tty is not None:
            self._pass_foreground(self.pgid, os.getpgrp())
            self._tty = None
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


def _controlling_tty() -> int | None:
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


def _start_error(program: str, exc: OSError) -> CommandStartError:
    if isinstance(exc, FileNotFoundError):
        return CommandStartError(f"command not found: {program}", 127, hint="check the spelling, or give the full path")
    if isinstance(exc, PermissionError):
        return CommandStartError(f"command not executable: {program}", 126)
    return CommandStartError(f"cannot run {program}: {exc.strerror}", 126)


def _take_terminal(fd: int) -> None:
    """Make the caller's group the terminal's foreground: the command's, between its fork and exec."""
    with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
        _set_foreground(fd, os.getpgrp())


def _set_foreground(fd: int, pgid: int) -> None:
    # A background group changing the foreground gets SIGTTOU unless it ignores it, as shells do.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
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
