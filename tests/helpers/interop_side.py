"""mutexctl's side of the interop suite: contend for one mutex for a while, logging each critical section.

Usage: interop_side.py MODE STORE MUTEX WHO LOG TIMEOUT HOLD_MS SECONDS
  pv       the library's P/V (the seed's interface)
  lock     the library's ``with svc.lock(...)`` (renewed in the background)
  apv      the asyncio API's P/V (mutexctl.aio)
  alock    the asyncio API's ``async with svc.lock(...)`` (the section's task cancelled at a loss)
  cli      the CLI in exec mode: ``mutexctl acquire MUTEX --wait 30s -- interop_side.py section ...``
  cli:ARG,ARG  the same with more acquire arguments, e.g. ``cli:--limit,2`` (a semaphore), ``cli:--shared``
  section  (the command the CLI runs) one critical section of HOLD_MS

Every section appends "enter WHO NS" and "exit WHO NS" (CLOCK_MONOTONIC ns, O_APPEND) to LOG, as
tests/interop/service.js does. Prints {"turns": N, "lost": L} at the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def log_line(log: str, what: str, who: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {who} {time.monotonic_ns()}\n".encode())
    finally:
        os.close(fd)


def section(log: str, who: str, hold_ms: int) -> None:
    def stopped(signum: int, _frame: object) -> None:  # exec mode stopped us: the section ends now
        log_line(log, "exit", who)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    log_line(log, "enter", who)
    time.sleep(hold_ms / 1000)
    log_line(log, "exit", who)


def main() -> None:
    mode = sys.argv[1]
    if mode == "section":
        section(sys.argv[3], sys.argv[2], int(sys.argv[4]))
        return
    store, mutex, who, log, timeout, hold_ms, seconds = sys.argv[2:9]
    hold = int(hold_ms) / 1000
    stop_at = time.monotonic() + float(seconds)
    turns = lost = 0
    if mode.split(":")[0] == "cli":
        extra = mode.split(":", 1)[1].split(",") if ":" in mode else []
        mutexctl = str(Path(sys.executable).parent / "mutexctl")
        env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_NODE_ID=who)
        while time.monotonic() < stop_at:
            done = subprocess.run([mutexctl, "acquire", mutex, *extra, "--wait", "30s", "--timeout", timeout, "--",
                                   sys.executable, __file__, "section", who, log, hold_ms], env=env)
            turns += done.returncode == 0
            lost += done.returncode == 75
            time.sleep(random.uniform(0.005, 0.025))
        print(json.dumps({"turns": turns, "lost": lost}))
        return
    if mode in ("apv", "alock"):
        import asyncio

        turns, lost = asyncio.run(on_the_loop(mode, store, mutex, who, log, timeout, hold, stop_at))
        print(json.dumps({"turns": turns, "lost": lost}))
        return
    from mutexctl import LeaseLostError, Service, Settings
    from mutexctl.config import parse_timeout_ms

    with Service(Settings(node_id=who, store=store)) as svc:
        while time.monotonic() < stop_at:
            if mode == "pv":
                if not svc.P(mutex, who, parse_timeout_ms(timeout)):
                    time.sleep(random.uniform(0.005, 0.025))
                    continue
                log_line(log, "enter", who)
                time.sleep(hold)
                log_line(log, "exit", who)
                svc.V(mutex)
            else:
                try:
                    with svc.lock(mutex, timeout=timeout, wait="30s") as held:
                        log_line(log, "enter", who)
                        held.wait_lost(hold)  # a lost lease ends the section at once
                        log_line(log, "exit", who)
                except LeaseLostError:
                    lost += 1
                    continue
            turns += 1
            time.sleep(random.uniform(0.005, 0.025))
    print(json.dumps({"turns": turns, "lost": lost}))


async def on_the_loop(mode: str, store: str, mutex: str, who: str, log: str, timeout: str, hold: float,
                      stop_at: float) -> tuple[int, int]:
    import asyncio

    import mutexctl.aio
    from mutexctl import LeaseLostError
    from mutexctl.config import parse_timeout_ms

    turns = lost = 0
    async with await mutexctl.aio.connect(store=store, node_id=who) as svc:
        while time.monotonic() < stop_at:
            if mode == "apv":
                if not await svc.P(mutex, who, parse_timeout_ms(timeout)):
                    await asyncio.sleep(random.uniform(0.005, 0.025))
                    continue
                log_line(log, "enter", who)
                await asyncio.sleep(hold)
                log_line(log, "exit", who)
                await svc.V(mutex)
            else:
                try:
                    async with svc.lock(mutex, timeout=timeout, wait="30s"):
                        log_line(log, "enter", who)
                        try:
                            await asyncio.sleep(hold)  # cancelled at once if the lease is lost
                        finally:
                            log_line(log, "exit", who)
                except LeaseLostError:
                    lost += 1
                    continue
            turns += 1
            await asyncio.sleep(random.uniform(0.005, 0.025))
    return turns, lost


if __name__ == "__main__":
    main()
