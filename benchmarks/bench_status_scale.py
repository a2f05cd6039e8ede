"""Benchmark (on demand): ``mutexctl status`` at fleet scale, 10,000 mutexes against 10, both stores.

    .venv/bin/python benchmarks/bench_status_scale.py [--big 10000] [--small 10] [--runs 5] [--no-mongodb]

Target (issue 21): status (table, piped) and ``--json status`` with 10,000 mutexes take at most 3x the
time with 10, same run, same mix (two thirds held for an hour, a third expired, every fifth a
semaphore of 3 with one holder). On MongoDB a mongoeco wire server is used, about 100x slower per
document than mongod: its own cost of handing over the documents is measured in the same run (the
bare driver's read of every document) and the ratio is also printed without it.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from mutexctl import Service, Settings  # noqa: E402

CHUNK = 2000  # leases one filling process takes (each SQLite lease keeps two descriptors while it runs)


def fill(store: str, first: int, end: int) -> None:
    """Take leases first..end-1 as ``mutexctl acquire`` without a command would: they outlive us."""
    with Service(Settings(node_id="bench", store=store), via="cli") as svc:
        for i in range(first, end):
            svc.try_acquire(f"svc-{i:05d}-nightly-export", timeout="1h" if i % 3 else "1ms",
                            command=f"./export.sh --shard {i}", limit=3 if i % 5 == 0 else None)


def fill_sqlite(store: str, count: int) -> None:
    for first in range(0, count, CHUNK):
        subprocess.run([sys.executable, __file__, "--fill", store, str(first), str(min(count, first + CHUNK))],
                       check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def fill_mongodb(store: str, count: int) -> float:
    """A few leases taken for real, then copies of their documents under other names; returns the
    bare driver's time to read every document (the server's share of a status)."""
    import pymongo

    fill(store, 0, 15)
    with pymongo.MongoClient(store) as client:
        mutexes = client.get_default_database()["mutexes"]
        models = list(mutexes.find({}))
        docs = []
        for i in range(15, count):
            doc = copy.deepcopy(models[i % len(models)])
            doc["_id"] = doc["mutexId"] = f"svc-{i:05d}-nightly-export"
            docs.append(doc)
        for first in range(0, len(docs), 200):  # (the wire server is slow to insert: keep each command short)
            mutexes.insert_many(docs[first:first + 200])
        reads = []
        for _ in range(3):
            started = time.perf_counter()
            list(mutexes.find({}).sort("mutexId"))
            reads.append(time.perf_counter() - started)
    return statistics.median(reads)


def timed(argv: list[str], store: str) -> float:
    env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_NODE_ID="on-call")
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return took


def compare(label: str, small: str, big: str, counts: tuple[int, int], runs: int,
            floors: tuple[float, float] = (0.0, 0.0)) -> bool:
    exe = str(Path(sys.executable).parent / "mutexctl")
    ok = True
    for shown, argv in (("status", [exe, "status"]), ("--json status", [exe, "--json", "status"])):
        smalls, bigs = [], []
        for _ in range(runs):  # interleaved: the machine's noise falls on both alike
            smalls.append(timed(argv, small))
            bigs.append(timed(argv, big))
        s, b = statistics.median(smalls), statistics.median(bigs)
        ratio = b / s
        line = (f"{label} {shown}: {counts[0]} mutexes {s * 1000:.0f} ms, {counts[1]} mutexes {b * 1000:.0f} ms: "
                f"{ratio:.2f}x (target <= 3x)")
        if floors != (0.0, 0.0):
            net = (b - floors[1]) / (s - floors[0])
            line += (f"; without the wire server's own read ({floors[1] * 1000:.0f} ms for {counts[1]} documents "
                     f"by the bare driver): {net:.2f}x")
            ratio = net
        print(f"{line}: {'OK' if ratio <= 3 else 'MISSED'}", flush=True)
        ok = ok and ratio <= 3
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-mongodb", action="store_true")
    parser.add_argument("--fill", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        fill(args.fill[0], int(args.fill[1]), int(args.fill[2]))
        return
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-scale-"))
    counts = (args.small, args.big)
    stores = [f"sqlite://{work / f'{n}.db'}" for n in counts]
    for store, n in zip(stores, counts, strict=True):
        fill_sqlite(store, n)
    compare("sqlite", *stores, counts, args.runs)
    if args.no_mongodb:
        return
    from mongo_server import MongoServer, with_database

    server = MongoServer()
    try:
        uri = server.start()
        stores = [with_database(uri, f"scale{n}") for n in counts]
        floors = tuple(fill_mongodb(store, n) for store, n in zip(stores, counts, strict=True))
        compare("mongodb", *stores, counts, args.runs, floors)  # type: ignore[arg-type]
    finally:
        server.stop()


if __name__ == "__main__":
    main()
