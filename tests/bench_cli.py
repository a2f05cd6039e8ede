"""Benchmark (on demand, not part of the test run): whole-process cost of the CLI as ratios.

    .venv/bin/python tests/bench_cli.py [--runs 30]

Every number is a ratio to a floor measured in the same run on the same machine, because these
machines are shared and noisy: the bare interpreter of this venv (``python -c pass``), and flock(1).
Targets (issue 2): ``mutexctl acquire x -- true`` <= 8x the bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutexctl import Service, Settings


def wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall time of ``runs`` whole-process runs, after one warm-up."""
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def library_pairs_per_second(store: str, seconds: float = 2.0) -> float:
    with Service(Settings(node_id="bench", store=store)) as svc:
        count, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            lease = svc.try_acquire("bench-lib", timeout="30s")
            svc.release("bench-lib", token=lease.fence)
            count += 1
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    store = f"sqlite://{work / 'bench.db'}"
    env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_NODE_ID="bench", XDG_CONFIG_HOME=str(work), NO_COLOR="1")
    exe = Path(sys.executable)
    script = exe.parent / "mutexctl"
    bare = wall([str(exe), "-c", "pass"], env, args.runs)
    rows = [("python -c pass (floor)", bare)]
    rows.append(("mutexctl acquire x -- true", wall([str(script), "acquire", "x", "--", "true"], env, args.runs)))
    rows.append(("mutexctl acquire x (print fence)", wall([str(script), "acquire", "y", "-t", "1ms"], env, args.runs)))
    rows.append(("mutexctl --help", wall([str(script), "--help"], env, args.runs)))
    if shutil.which("flock"):
        rows.append(("flock FILE true", wall(["flock", str(work / "lockfile"), "true"], env, args.runs)))
    print(f"{'command':36} {'median':>9} {'x bare python':>14}")
    for label, seconds in rows:
        print(f"{label:36} {seconds * 1000:7.1f}ms {seconds / bare:13.2f}x")
    cycle = dict(rows)["mutexctl acquire x -- true"] / bare
    print(f"\nCLI cycle / bare interpreter: {cycle:.2f}x (target <= 8x): {'OK' if cycle <= 8 else 'MISSED'}")
    print(f"library acquire+release pairs/s on SQLite: {library_pairs_per_second(store):.0f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
