"""Benchmark (on demand): SIGTERM of a service holding a lease -> another process's waiting acquire
gets it. Compared with the lease's timeout (what it took before services released at shutdown) and
with the waiter's poll bound (1 s: the most a waiter sleeps between tries when nobody rings it).

    .venv/bin/python benchmarks/bench_shutdown.py [--rounds 5] [--no-mongodb]

The holder is tests/helpers/service_life.py (``connect(release_on_signals=True)``, a 60 s lease held in
``with svc.lock(...)``); the waiter is this process, waiting in line. Target: within one poll of the
release, far below the 60 s lease.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from mongo_server import MongoServer, with_database  # noqa: E402
from mutexctl import Service, Settings  # noqa: E402

LEASE_S = 60.0
POLL_BOUND_S = 1.0


def one_round(store_url: str, work: Path) -> float:
    out = work / "told"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "service_life.py"), store_url, "svc",
                               "main", str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    with Service(Settings(node_id="waiter", store=store_url)) as waiter:
        got: list[float] = []
        thread = threading.Thread(target=lambda: got.append(
            time.monotonic() if waiter.acquire("b", timeout="5s", wait="120s") else 0.0))
        thread.start()
        while not waiter.status("b")[0].waiters:
            time.sleep(0.01)
        sent = time.monotonic()
        holder.terminate()
        holder.wait(30)
        thread.join()
        waiter.release("b")
        return got[0] - sent


def report(label: str, store_url: str, rounds: int, work: Path) -> None:
    times = [one_round(store_url, work) for _ in range(rounds)]
    median = statistics.median(times)
    print(f"{label}: SIGTERM -> next holder median {median * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"({rounds} rounds); vs the lease {median / LEASE_S:.4f}x, vs one poll {median / POLL_BOUND_S:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-mongodb", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    try:
        report("SQLite", f"sqlite://{work / 's.db'}", args.rounds, work)
        if not args.no_mongodb:
            server = MongoServer()
            try:
                report("MongoDB (mongoeco)", with_database(server.start(), "bench"), args.rounds, work)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
