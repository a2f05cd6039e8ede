"""Benchmark (on demand): semaphore and shared-hold acquire+release per second against the exclusive
lock's, on each store, and the commands each operation sends to MongoDB.

    .venv/bin/python benchmarks/bench_slots.py [--pairs 300] [--no-mongodb]

Every number is a ratio to the exclusive lock measured in the same run (the floor), on the same
store; rounds alternate between the kinds so that a noisy neighbour hits them alike. Target: one
round trip each for acquire, renew and release on MongoDB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

from mongo_server import MongoServer, with_database
from mutexctl import Service, Settings

KINDS: dict[str, dict[str, Any]] = {"exclusive": {}, "semaphore (limit 5)": {"limit": 5}, "shared": {"shared": True}}


def pairs_per_second(svc: Service, kind: dict[str, Any], pairs: int, name: str) -> float:
    started = time.perf_counter()
    for _ in range(pairs):
        lease = svc.try_acquire(name, timeout="30s", **kind)
        svc.leases.release(name, token=lease.fence, kind=lease.kind)
    return pairs / (time.perf_counter() - started)


def measure(label: str, store: str, pairs: int, rounds: int = 5) -> None:
    with Service(Settings(node_id="bench", store=store)) as svc:
        for name, kind in KINDS.items():  # warm up (the first write reads the schema once)
            pairs_per_second(svc, kind, 5, f"bench-{name}")
        rates: dict[str, list[float]] = {name: [] for name in KINDS}
        for _ in range(rounds):
            for name, kind in KINDS.items():
                rates[name].append(pairs_per_second(svc, kind, pairs // rounds, f"bench-{name}"))
    floor = statistics.median(rates["exclusive"])
    print(f"== {label}: acquire+release pairs/s, median of {rounds} rounds")
    for name in KINDS:
        rate = statistics.median(rates[name])
        print(f"   {name:<20} {rate:8.0f}/s   {rate / floor:.2f}x the exclusive lock")


def round_trips(store: str) -> None:
    from pymongo import monitoring

    class Listener(monitoring.CommandListener):
        def __init__(self) -> None:
            self.names: list[str] = []

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            self.names.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    listener = Listener()
    monitoring.register(listener)
    with Service(Settings(node_id="bench", store=store)) as svc:
        for name, kind in KINDS.items():
            svc.release("warm", token=svc.try_acquire("warm").fence)
            listener.names.clear()
            lease = svc.try_acquire(f"rt-{name}", timeout="30s", **kind)
            acquire = list(listener.names)
            listener.names.clear()
            lease = svc.renew(lease)
            renew = list(listener.names)
            listener.names.clear()
            svc.leases.release(lease.mutex_id, token=lease.fence, kind=lease.kind)
            release = list(listener.names)
            print(f"   {name:<20} acquire {acquire}, renew {renew}, release {release}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--no-mongodb", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    try:
        measure("SQLite", f"sqlite://{work / 'b.db'}", args.pairs)
        if not args.no_mongodb:
            server = MongoServer()
            try:
                url = with_database(server.start(), "bench")
                measure("MongoDB (mongoeco)", url, args.pairs // 3)
                print("== MongoDB commands per operation")
                round_trips(url)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
