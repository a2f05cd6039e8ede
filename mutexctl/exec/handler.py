"""A short-lived command (a broadcast handler) run to its end in a process group of its own, within
a time limit, and never outliving the process that runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .gate import Gate, find_program
from .watcher import Watcher

TIMED_OUT = 124  # the status of a handler stopped at its time limit, as timeout(1) gives it
_FOREVER_S = 10 * 365 * 24 * 3600.0  # the watcher's deadline when there is no time limit


class HandlerRun(NamedTuple):
    status: int  # as a shell gives it: 126/127 if it could not start, 128+N if signal N ended it
    timed_out: bool  # stopped at the time limit (status TIMED_OUT)


def handler_stop_grace_s(limit_s: float | None) -> float:
    """How long a handler stopped at its limit gets between SIGTERM and SIGKILL."""
    return 5.0 if limit_s is None else min(5.0, max(0.5, limit_s / 6))


def run_handler(argv: Sequence[str], stdin: bytes, env: Mapping[str, str], *,
                limit_s: float | None = None) -> HandlerRun:
    """Run ``argv`` with ``stdin`` for at most ``limit_s`` seconds (None: no limit).

    It gets a process group of its own, so a Ctrl-C or SIGTERM meant for the listener lets the
    running handler finish (the listener then stops) instead of killing it midway. Past the limit
    the group gets SIGTERM, then SIGKILL after a grace. A watcher (see exec.watcher) kills the group
    if the listener dies, even by SIGKILL, or stays frozen past the limit.
    """
    grace = handler_stop_grace_s(limit_s)
    started = time.monotonic()
    try:
        find_program(argv[0], env)
    except FileNotFoundError:
        return HandlerRun(127, False)
    except OSError:
        return HandlerRun(126, False)
    gate = Gate()  # it runs only once its watcher does, so a listener killed meanwhile takes it along
    try:
        process = subprocess.Popen(gate.argv(argv), stdin=subprocess.PIPE, env=dict(env), process_group=0,
                                   pass_fds=gate.fds)
    except OSError:
        gate.close()
        return HandlerRun(126, False)
    gate.started()
    watcher = None
    try:
        with contextlib.suppress(OSError):  # without a watcher the handler still runs, only less guarded
            # The watcher keeps the listener's own schedule (TERM at the limit, KILL a grace later): it
            # acts only if the listener cannot, and a grace added twice would let a hung handler run on.
            watcher = Watcher(process.pid, grace_s=grace, left_s=limit_s if limit_s else _FOREVER_S)
        gate.open()
        try:
            process.communicate(stdin, timeout=limit_s)
        except subprocess.TimeoutExpired:
            _stop_group(process, grace)
            return HandlerRun(TIMED_OUT, True)
        if limit_s and process.returncode < 0 and time.monotonic() - started >= limit_s:
            # The watcher's TERM at the limit came first (the two clocks race on a busy machine): it
            # was stopped at its limit all the same, and the rest of its group gets the rest of the grace.
            _end_group(process.pid, started + limit_s + grace)
            return HandlerRun(TIMED_OUT, True)
    except BaseException:
        _kill_group(process.pid)
        process.wait()
        raise
    finally:
        gate.close()  # opened by now, unless it was never to run
        if watcher is not None:
            watcher.dismiss(kill_group=process.returncode is None, group_gone=process.returncode is not None)
    code = process.returncode
    return HandlerRun(128 - code if code < 0 else code, False)


def _stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the handler's group (and SIGCONT, should it be stopped), SIGKILL it after the grace."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(process.pid)  # what the command left running in its group goes too
    process.wait()


def _end_group(pgid: int, kill_at: float) -> None:
    """What is left of a group that got SIGTERM: SIGKILL it at ``kill_at`` (monotonic), or once empty."""
    while time.monotonic() < kill_at:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _kill_group(pgid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
