"""Benchmark (on demand): broadcast fan-out latency to 3 listener processes, and messages/s.

    .venv/bin/python benchmarks/bench_broadcast.py [--messages 20] [--poll 1s] [--no-mongodb]

Three `mutexctl listen` processes print each message as a JSON line; the time from the sender's
broadcast() returning to each line arriving is one latency sample. Messages go out at random phases
of the listeners' poll, so the median is about half the poll interval (the ratio printed is p50 / (poll/2)).
Target: p50 <= poll + 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

from mongo_server import MongoServer, with_database
from mutexctl import Service, Settings
from mutexctl.config import parse_duration


def fan_out(store: str, messages: int, poll: str) -> list[float]:
    env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_POLL_INTERVAL=poll)
    script = str(Path(sys.executable).parent / "mutexctl")
    listeners = [subprocess.Popen([script, "listen"], env={**env, "MUTEXCTL_NODE_ID": f"bench-l{i}"},
                                  stdout=subprocess.PIPE, text=True) for i in range(3)]
    sender = Service(Settings(node_id="bench-sender", store=store))
    deadline = time.monotonic() + 30
    while len(sender.store.live_nodes("default", 30)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent: dict[str, float] = {}
    arrivals: list[tuple[str, float]] = []

    def read(proc: subprocess.Popen[str]) -> None:  # one reader per listener, stamping arrival times
        assert proc.stdout is not None
        for line in proc.stdout:
            arrivals.append((json.loads(line)["id"], time.monotonic()))

    readers = [threading.Thread(target=read, args=(proc,), daemon=True) for proc in listeners]
    for reader in readers:
        reader.start()
    for _ in range(messages):
        time.sleep(random.uniform(0.1, 0.4))
        message = sender.broadcast("bench")
        sent[message.id] = time.monotonic()
    deadline = time.monotonic() + 10 * parse_duration(poll) + 10
    while len(arrivals) < 3 * messages and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = [at - sent[message_id] for message_id, at in list(arrivals) if message_id in sent]
    for proc in listeners:
        proc.terminate()
        proc.wait(timeout=10)
    sender.close()
    return samples


def throughput(store: str, count: int = 200) -> float:
    with Service(Settings(node_id="bench-sender", store=store)) as sender:
        started = time.perf_counter()
        for _ in range(count):
            sender.broadcast("bench-rate")
        return count / (time.perf_counter() - started)


def report(name: str, store: str, messages: int, poll: str) -> None:
    Service(Settings(node_id="bench", store=store)).init_schema()
    samples = fan_out(store, messages, poll)
    poll_s = parse_duration(poll)
    p50 = statistics.median(samples) if samples else float("nan")
    p95 = sorted(samples)[int(0.95 * (len(samples) - 1))] if samples else float("nan")
    verdict = "OK" if p50 <= poll_s + 0.020 else "MISSED"
    print(f"== {name}: {len(samples)}/{3 * messages} deliveries; fan-out latency p50 {p50 * 1000:.0f}ms "
          f"= {p50 / (poll_s / 2):.2f}x the theoretical poll/2, p95 {p95 * 1000:.0f}ms, "
          f"max {max(samples) * 1000:.0f}ms (poll {poll}; target p50 <= poll + 20ms): {verdict}")
    print(f"   broadcast throughput, one sender: {throughput(store):.0f} messages/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--poll", default="1s")
    parser.add_argument("--no-mongodb", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    try:
        report("SQLite", f"sqlite://{work / 'b.db'}", args.messages, args.poll)
        if not args.no_mongodb:
            server = MongoServer()
            try:
                report("MongoDB (mongoeco)", with_database(server.start(), "bench"), args.messages, args.poll)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
