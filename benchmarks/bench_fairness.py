"""Benchmark (on demand): are waiters served in order, and how soon after a crashed holder's expiry
does a waiter get in? On each store, with real processes.

    .venv/bin/python benchmarks/bench_fairness.py [--procs 4] [--seconds 10] [--hold 50ms] [--crashes 10] [--no-mongodb]
                                             [--no-ring]
    MUTEXCTL_BENCH_OTHER=1 PYTHONPATH=/path/to/older/checkout ... --crashes 0   # the same, of an older mutexctl

--no-ring: the waiters get no doorbell (as when the holder runs on another host): they poll.

Fairness: K processes loop acquire (waiting) -> hold -> release on one mutex. Printed per store:
each process's turns against a fair share (target: all within +-25 %), the p99 and longest wait
against (K-1) x hold + 2 poll intervals, and the store commands each waiter sends per second of
waiting (target: no more than before). Crash: a holder (1 s lease, renewed) is killed with
SIGKILL while another process waits; the take-over's lateness after the lease's end is read from
the lease history, on the store's clock (target: p90 <= 50 ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not os.environ.get("MUTEXCTL_BENCH_OTHER"):  # set: measure the mutexctl on PYTHONPATH (an older checkout)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

from mutexctl import Service, Settings

try:
    from mutexctl.waitline import MAX_POLL_S, MIN_POLL_S
except ImportError:  # a commit from before the queue: its backoff
    MIN_POLL_S, MAX_POLL_S = 0.005, 1.0

from mongo_server import MongoServer, with_database

# Store commands per second of waiting, per waiter, before waiters were queued (this script on the
# commit before, same machine): the starved waiters polled once a second.
BEFORE_COMMANDS_PER_S = {"SQLite": 2.4, "MongoDB (mongoeco)": 2.5}


class Counter:
    """Store commands a waiter sends: MongoDB commands by monitoring, SQLite transactions by count."""

    def __init__(self, store: str) -> None:
        self.count = 0
        if store.startswith("mongodb"):  # before the client exists: listeners apply to clients made later
            from pymongo import monitoring

            counter = self

            class Listener(monitoring.CommandListener):
                def started(self, event: Any) -> None:
                    if event.command_name in ("findAndModify", "update", "aggregate", "find", "delete"):
                        counter.count += 1

                def succeeded(self, event: Any) -> None: ...

                def failed(self, event: Any) -> None: ...

            monitoring.register(Listener())

    def attach(self, svc: Service) -> None:
        if not svc.store.url.startswith("mongodb"):
            transaction = svc.store._transaction  # type: ignore[attr-defined]

            def counted(*args: Any, **kw: Any) -> Any:
                self.count += 1
                return transaction(*args, **kw)

            svc.store._transaction = counted  # type: ignore[attr-defined]


def worker(store: str, name: str, seconds: float, hold_s: float, start_at: float) -> None:
    if os.environ.get("MUTEXCTL_BENCH_NO_RING"):  # as if every holder ran on another host
        import mutexctl.waitline

        mutexctl.waitline.Doorbell.__init__ = lambda self, token: setattr(self, "sock", None)  # type: ignore
    counter = Counter(store)
    svc = Service(Settings(node_id=f"w{os.getpid()}", store=store))
    counter.attach(svc)
    svc.store.prepare_writes()
    while time.time() < start_at:
        time.sleep(0.001)
    waits, polls, waited_total, holds = [], 0, 0.0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before, started = counter.count, time.monotonic()
        lease = svc.acquire(name, timeout="10s", wait="30s")
        waited = time.monotonic() - started
        waits.append(waited)
        polls += counter.count - before - 1  # the try that got it is not waiting
        waited_total += waited
        held_at = time.time()
        time.sleep(hold_s)
        holds.append((held_at, time.time()))
        svc.release(name, token=lease.fence)
    svc.close()
    print(json.dumps({"turns": len(waits), "waits": waits, "polls": polls, "waited_s": waited_total,
                      "holds": holds}), flush=True)


def fairness(store: str, procs: int, seconds: float, hold_s: float) -> dict[str, Any]:
    start_at = time.time() + 2.0
    children = [subprocess.Popen([sys.executable, __file__, "--worker", store, "fair", str(seconds), str(hold_s),
                                  str(start_at)], stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    results = [json.loads(child.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1]) for child in children]
    turns = [r["turns"] for r in results]
    holds = sorted(tuple(h) for r in results for h in r["holds"])
    # hand-over: from a holder's call of release to the next holder's return from acquire (both round
    # trips, the ring or the poll, and the waiter's wake-up)
    gaps = sorted(nxt[0] - prev[1] for prev, nxt in itertools.pairwise(holds))
    fair = sum(turns) / procs
    waits = sorted(w for r in results for w in r["waits"])
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    per_s = sum(r["polls"] for r in results) / max(1e-9, sum(r["waited_s"] for r in results))
    return {"turns": turns, "spread": [round(t / fair - 1, 3) for t in turns], "p99_s": p99, "max_s": waits[-1],
            "gap_p50_s": gaps[len(gaps) // 2], "gap_p90_s": gaps[int(len(gaps) * 0.9)],
            "commands_per_waiting_s": per_s, "polls_per_turn": sum(r["polls"] for r in results) / max(1, sum(turns)),
            # the least any queue needs: one command per wait (joining it), however short the waits
            "floor_per_waiting_s": sum(turns) / max(1e-9, sum(r["waited_s"] for r in results))}


def crash_lateness(store: str, crashes: int) -> list[int]:
    """Take-over lateness (ms after the dead holder's lease ended, store clock) over ``crashes`` runs."""
    late = []
    svc = Service(Settings(node_id="bench-reader", store=store))
    for i in range(crashes):
        name = f"crash-{i}-{time.time_ns()}"
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time, mutexctl\n"
            f"svc = mutexctl.connect(store={store!r}, node_id='holder')\n"
            f"lock = svc.lock({name!r}, timeout='1s'); lock.__enter__()\n"
            "print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen([sys.executable, "-c", (
            "import mutexctl\n"
            f"svc = mutexctl.connect(store={store!r}, node_id='waiter')\n"
            f"svc.release({name!r}, token=svc.acquire({name!r}, timeout='5s', wait='30s').fence)\n"
            "svc.close()\n")])
        time.sleep(0.4 + (i % 5) * 0.13)  # kill at various points of the renewal cycle
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert waiter.wait(60) == 0
        [takeover] = [e for e in svc.history([name]) if e.kind == "takeover"]
        late.append(takeover.late_ms or 0)
    return late


def run(label: str, store: str, args: argparse.Namespace) -> None:
    result = fairness(store, args.procs, args.seconds, args.hold_s)
    spread_ok = all(abs(s) <= 0.25 for s in result["spread"])
    bound = (args.procs - 1) * args.hold_s + 2 * MAX_POLL_S
    tight = (args.procs - 1) * args.hold_s + 2 * MIN_POLL_S
    print(f"== {label}: {args.procs} processes, hold {args.hold_s * 1000:.0f} ms, {args.seconds:.0f} s")
    print(f"turns {result['turns']}; spread from a fair share {result['spread']} (target +-25 %): "
          f"{'OK' if spread_ok else 'MISSED'}")
    print(f"wait p99 {result['p99_s'] * 1000:.0f} ms, longest {result['max_s'] * 1000:.0f} ms; bound (K-1) x hold + "
          f"2 polls: with the longest poll interval {bound * 1000:.0f} ms: "
          f"{'OK' if result['p99_s'] <= bound else 'MISSED'}; with the shortest {tight * 1000:.0f} ms: "
          f"{'OK' if result['p99_s'] <= tight else 'MISSED'}")
    turn = (args.procs - 1) * (args.hold_s + result["gap_p50_s"]) + 2 * MIN_POLL_S
    print(f"  hand-over, release to the next acquire's return: p50 {result['gap_p50_s'] * 1000:.1f} ms, p90 "
          f"{result['gap_p90_s'] * 1000:.1f} ms; (K-1) x (hold + p50 hand-over) + 2 shortest polls = "
          f"{turn * 1000:.0f} ms: {'OK' if result['p99_s'] <= turn else 'MISSED'}")
    before, load = BEFORE_COMMANDS_PER_S.get(label), result["commands_per_waiting_s"]
    print(f"store commands per second of waiting, per waiter: {load:.1f} (before the queue: {before}; target: no "
          f"more): {'OK' if before and load <= before else 'MISSED'}; polls per turn taken: "
          f"{result['polls_per_turn']:.1f}")
    print(f"  the floor for any queue, one command (joining it) per wait: {result['floor_per_waiting_s']:.1f} per "
          f"second of waiting, 1.0 per turn")
    if args.crashes:
        late = sorted(crash_lateness(store, args.crashes))
        p90 = late[min(len(late) - 1, int(len(late) * 0.9))]
        print(f"take-over after a kill -9, ms after the lease's end (store clock): {late}; p90 {p90} ms "
              f"(target <= 50 ms): {'OK' if p90 <= 50 else 'MISSED'}")
    print()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        store, name, seconds, hold_s, start_at = sys.argv[2:7]
        worker(store, name, float(seconds), float(hold_s), float(start_at))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hold", default="50ms")
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--no-mongodb", action="store_true")
    parser.add_argument("--no-ring", action="store_true")
    args = parser.parse_args()
    if args.no_ring:
        os.environ["MUTEXCTL_BENCH_NO_RING"] = "1"
    from mutexctl.inputs import parse_duration

    args.hold_s = parse_duration(args.hold)
    home = Path(tempfile.mkdtemp())
    try:
        run("SQLite", f"sqlite://{home / 'fair.db'}", args)
        if not args.no_mongodb:
            server = MongoServer()
            try:
                run("MongoDB (mongoeco)", with_database(server.start(), "fair"), args)
            finally:
                server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
