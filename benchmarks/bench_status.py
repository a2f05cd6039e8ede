"""Benchmark (on demand): ``mutexctl status`` with many mutexes, on a terminal (a pty) against piped.

    .venv/bin/python benchmarks/bench_status.py [--mutexes 3000] [--runs 7] [--python PATH]

Target: the terminal rendering takes at most 2x the piped one (same run, same store). ``--python``
times another venv's mutexctl (an older one, say) on the same store.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mutexctl import Service, Settings


def piped(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def on_a_terminal(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    while select.select([fd], [], [], 60)[0]:
        try:
            if not os.read(fd, 1 << 20):
                break
        except OSError:
            break
    os.waitpid(pid, 0)
    os.close(fd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutexes", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-status-"))
    store = f"sqlite://{work / 'status.db'}"
    with Service(Settings(node_id="bench", store=store)) as svc:
        for i in range(args.mutexes):
            svc.try_acquire(f"service-{i:05d}-nightly-export", timeout="1h" if i % 3 else "1ms",
                            command=f"./export.sh --shard {i} --to s3://bucket/exports/{i}")
    env = dict(os.environ, MUTEXCTL_STORE=store, COLUMNS="80", LINES="24", TERM="xterm")
    argv = [str(Path(args.python).parent / "mutexctl"), "status"]
    pipes, terminals = [], []
    for _ in range(args.runs):
        pipes.append(piped(argv, env))
        terminals.append(on_a_terminal(argv, env))
    pipe, terminal = statistics.median(pipes), statistics.median(terminals)
    ratio = terminal / pipe
    print(f"status with {args.mutexes} mutexes ({argv[0]}): piped {pipe * 1000:.0f} ms, on a terminal "
          f"{terminal * 1000:.0f} ms: {ratio:.2f}x (target <= 2x): {'OK' if ratio <= 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
