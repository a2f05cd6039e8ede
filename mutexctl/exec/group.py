"""A command in a process group of its own: started, signalled, stopped, waited for, and watched.

The group means one signal reaches everything the command started (``sh -c 'sleep 100 & wait'``
included). On a terminal the command is a job: Ctrl-Z suspends it together with mutexctl.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import CommandStartError
from .gate import Gate, find_program
from .terminal import controlling_tty, foreground, set_foreground, take_terminal
from .watcher import Watcher

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_JOB_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)  # the stops a terminal causes


class CommandGroup:
    """One command and everything it starts, in a process group led by the command."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, stdin: bool = True) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.stdin = stdin  # False: the command reads /dev/null, not our stdin (consul's default)
        self.process: subprocess.Popen[bytes] | None = None
        self._watcher: Watcher | None = None
        self._kill_timer: threading.Timer | None = None
        self._pending: list[int] = []  # signals that arrived before the command existed
        self._tty: int | None = None  # our controlling terminal (an fd of 0-2), if any
        self._suspended = False  # stopped from the terminal together with mutexctl
        self._stop_asked = False  # a SIGTSTP was passed on to the command

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, grace_s: float, left_s: float, keep_fds: tuple[int, ...] = ()) -> None:
        """Start the command (exit statuses 126/127 as a shell gives them) and its watcher, which
        stops the group ``left_s`` seconds from now unless ``extend`` moves that deadline."""
        tty = self._tty = controlling_tty()
        # On a terminal we are in front of, the command takes the terminal itself before its exec,
        # as a shell's child does: otherwise it could read (and be stopped by SIGTTIN) before we
        # hand it over, and a Ctrl-Z in that moment would be lost.
        front_tty = tty if tty is not None and foreground(tty) == os.getpgrp() else None
        extra: dict[str, Any] = {} if front_tty is None else {"preexec_fn": functools.partial(take_terminal, front_tty)}
        try:
            find_program(self.argv[0], self.env)
        except OSError as exc:
            raise _start_error(self.argv[0], exc) from None
        gate = Gate()  # the command runs only once its watcher does
        try:
            self.process = subprocess.Popen(gate.argv(self.argv), env=self.env, process_group=0,
                                            pass_fds=gate.fds, stdin=None if self.stdin else subprocess.DEVNULL,
                                            **extra)
        except OSError as exc:
            gate.close()
            if front_tty is not None:  # the child took the terminal, then failed to exec
                take_terminal(front_tty)
            raise _start_error("/bin/sh", exc) from None
        gate.started()
        if tty is not None:
            self._pass_foreground(os.getpgrp(), self.pgid)  # if the command could not take it
        try:
            self._watcher = Watcher(self.pgid, grace_s=grace_s, left_s=left_s, keep_fds=keep_fds)
        except OSError as exc:  # without a watcher the command must not run at all
            gate.close()
            self.signal(signal.SIGKILL)
            self.process.wait()
            self.finish(kill_rest=True)
            raise CommandStartError(f"cannot start the process-group watcher /bin/sh: {exc.strerror}", 126) from None
        gate.open()
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
            signum, in_front = os.WSTOPSIG(status), foreground(self._tty) == self.pgid
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

    def finish(self, *, kill_rest: bool) -> None:
        """Take the terminal back and dismiss the watcher; with ``kill_rest`` it SIGKILLs what is left."""
        if self._tty is not None:
            self._pass_foreground(self.pgid, os.getpgrp())
            self._tty = None
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._watcher is not None:
            self._watcher.dismiss(kill_group=kill_rest)
            self._watcher = None

    def extend(self, left_s: float) -> None:
        """Move the watcher's deadline to ``left_s`` seconds from now; safe from any thread."""
        if self._watcher is not None:
            self._watcher.extend(left_s)

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
        if foreground(self._tty) == owner:
            with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
                set_foreground(self._tty, to)


def _start_error(program: str, exc: OSError) -> CommandStartError:
    if isinstance(exc, FileNotFoundError):
        return CommandStartError(f"command not found: {program}", 127, hint="check the spelling, or give the full path")
    if isinstance(exc, PermissionError):
        return CommandStartError(f"command not executable: {program}", 126)
    return CommandStartError(f"cannot run {program}: {exc.strerror}", 126)
