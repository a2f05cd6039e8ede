"""Benchmark (on demand, not part of the test run): the CLI's and the library's cost, as ratios.

    .venv/bin/python benchmarks/bench_cli.py [--runs 30] [--python PATH] [--mongodb URI | --no-mongodb]

Every number is a ratio to a floor measured in the same run on the same machine, because these
machines are shared and noisy. The CLI is timed from a clean venv that holds only mutexctl and its
dependencies (built in .cache/bench-venv from this checkout; ``--python`` names another venv's
interpreter, e.g. one with an older mutexctl, to compare): a development venv starts slower.
Without --mongodb, a mongoeco wire server is started (tests/helpers/mongo_server.py). Targets:
- ``import mutexctl`` <= 2.5x the bare interpreter (``python -c pass``);
- SQLite: ``mutexctl acquire x -- true`` <= 1.3x ``python -c "import typer"`` (the framework's floor);
- MongoDB: ``mutexctl acquire x -- true`` <= 1.3x ``python -c "import pymongo"``, and the commands it
  sends are counted;
- MongoDB library: acquire+release <= 1.1x two raw ``find_one_and_update`` calls.
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mutexctl import Service, Settings

# Commands run from a directory of their own: ``python -c`` puts the working directory first on
# sys.path, and from the checkout that would import its mutexctl, not the measured venv's.
NEUTRAL_DIR = tempfile.mkdtemp(prefix="mutexctl-bench-cwd-")


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=NEUTRAL_DIR)
    return time.perf_counter() - started


def walls(commands: list[list[str]], env: dict[str, str], runs: int) -> list[float]:
    """Median whole-process wall time of each command, the commands interleaved run by run so
    that the machine's drift (other tenants, CPU frequency) falls on all of them alike."""
    samples: list[list[float]] = [[] for _ in commands]
    for argv in commands:
        _once(argv, env)  # warm-up: page cache, .pyc files
    for _ in range(runs):
        for i, argv in enumerate(commands):
            samples[i].append(_once(argv, env))
    return [statistics.median(s) for s in samples]


def rate(step: Callable[[], None], seconds: float = 2.0) -> float:
    """Calls per second of ``step``, after a warm-up, over ``seconds``."""
    for _ in range(20):
        step()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        step()
        count += 1
    return count / seconds


def rates(steps: list[Callable[[], None]], rounds: int = 5, seconds: float = 1.0) -> list[float]:
    """Median rate of each step over ``rounds`` interleaved rounds."""
    results: list[list[float]] = [[] for _ in steps]
    for _ in range(rounds):
        for i, step in enumerate(steps):
            results[i].append(rate(step, seconds))
    return [statistics.median(r) for r in results]


def library_pair(store: str) -> Callable[[], None]:
    svc = Service(Settings(node_id="bench", store=store))

    def pair() -> None:
        lease = svc.try_acquire("bench-lib", timeout="30s")
        svc.release("bench-lib", token=lease.fence)

    return pair


def raw_pair(uri: str) -> Callable[[], None]:
    """The same two commands the store sends (same filters and update pipelines), straight through pymongo."""
    import pymongo
    from mutexctl.models import Holder
    from mutexctl.stores.mongodb.documents import take_pipeline
    from mutexctl.stores.mongodb.queue import NO_LIVE_WAITERS
    from mutexctl.stores.seed_document import EXPIRED, EXPIRED_OWN, HOLDER_CURRENT

    collection = pymongo.MongoClient(uri, w="majority", tz_aware=True).get_default_database()["mutexes"]
    take = take_pipeline("bench-raw", "bench", 30000, Holder("h", 1, "u", "c"))
    free = [{"$set": {"taken": False, "releasedLate": EXPIRED_OWN, "holder.releasedAt": "$$NOW"}}]

    def pair() -> None:
        doc = collection.find_one_and_update(
            {"mutexId": "bench-raw", "$or": [{"taken": {"$ne": True}}, {"$expr": EXPIRED}], "$expr": NO_LIVE_WAITERS},
            take, upsert=True, return_document=pymongo.ReturnDocument.AFTER,
            projection={"fence": 1, "takenAt": 1, "holder": 1})
        collection.find_one_and_update({"mutexId": "bench-raw", "taken": True, "takenBy": "bench",
                                        "fence": doc["fence"], "$expr": {"$and": [HOLDER_CURRENT]}},
                                       free, return_document=pymongo.ReturnDocument.AFTER,
                                       projection={"releasedLate": 1, "fence": 1, "holder": 1, "takenAt": 1,
                                                   "takenBy": 1})

    return pair


def minimal_pair(uri: str) -> Callable[[], None]:
    """What the README's P/V for other services send: the seed's string form only, no fence or holder."""
    import pymongo

    collection = pymongo.MongoClient(uri, w="majority", tz_aware=True).get_default_database()["mutexes"]
    end = {"$add": [{"$dateFromString": {"dateString": "$takenAt", "onError": None}}, "$timeout"]}
    ended = {"$let": {"vars": {"end": end}, "in": {"$and": [{"$ne": ["$$end", None]}, {"$lte": ["$$end", "$$NOW"]}]}}}
    take = [{"$set": {"mutexId": "bench-min", "taken": True, "takenBy": "bench", "timeout": 30000, "takenAt": {
        "$dateToString": {"date": "$$NOW", "format": "%Y-%m-%dT%H:%M:%S.%LZ"}}}}]

    def pair() -> None:
        doc = collection.find_one_and_update({"mutexId": "bench-min", "$or": [{"taken": {"$ne": True}},
                                                                              {"$expr": ended}]},
                                             take, upsert=True, return_document=pymongo.ReturnDocument.AFTER)
        collection.update_one({"mutexId": "bench-min", "taken": True, "takenBy": "bench", "takenAt": doc["takenAt"]},
                              {"$set": {"taken": False}})

    return pair


def measure(commands: list[tuple[str, list[str]]], env: dict[str, str], runs: int) -> list[tuple[str, float]]:
    """(label, median seconds) per command, the first being the floor."""
    labels, argvs = zip(*commands, strict=True)
    return list(zip(labels, walls(list(argvs), env, runs), strict=True))


def table(rows: list[tuple[str, float]], floor: float, floor_name: str) -> None:
    print(f"{'command':40} {'median':>9} {'x ' + floor_name:>24}")
    for label, seconds in rows:
        print(f"{label:40} {seconds * 1000:7.1f}ms {seconds / floor:23.2f}x")


def bench_sqlite(work: Path, exe: Path, runs: int) -> None:
    store = f"sqlite://{work / 'bench.db'}"
    env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_NODE_ID="bench", XDG_CONFIG_HOME=str(work), NO_COLOR="1")
    script = str(exe.parent / "mutexctl")
    commands = [("python -c pass (floor)", [str(exe), "-c", "pass"]),
                ("python -c 'import typer' (floor)", [str(exe), "-c", "import typer"]),
                ("python -c 'import mutexctl'", [str(exe), "-c", "import mutexctl"]),
                ("mutexctl acquire x -- true", [script, "acquire", "x", "--", "true"]),
                ("mutexctl acquire y -t 1ms (fence)", [script, "acquire", "y", "-t", "1ms"]),
                ("mutexctl status", [script, "status"]),
                ("mutexctl --help", [script, "--help"])]
    if shutil.which("flock"):
        commands.append(("flock FILE true", ["flock", str(work / "lockfile"), "true"]))
    rows = measure(commands, env, runs)
    bare, typer_floor = rows[0][1], rows[1][1]
    print(f"== SQLite (embedded default), interpreter {exe}")
    table(rows, bare, "bare python")
    library = rows[2][1] / bare
    cycle = rows[3][1] / typer_floor
    verdict = "OK" if library <= 2.5 else "MISSED"
    print(f"import mutexctl / bare interpreter: {library:.2f}x (target <= 2.5x): {verdict}")
    print(f"CLI cycle / import typer: {cycle:.2f}x (target <= 1.3x): {'OK' if cycle <= 1.3 else 'MISSED'}")
    print(f"library acquire+release pairs/s: {rates([library_pair(store)], rounds=1, seconds=2)[0]:.0f}\n")


# Run in the measured venv: the commands one CLI run sends (handshakes and heartbeats are not commands).
_COUNT = """
import sys
from pymongo import monitoring
class Listener(monitoring.CommandListener):
    names = []
    def started(self, event): self.names.append(event.command_name)
    def succeeded(self, event): pass
    def failed(self, event): pass
monitoring.register(Listener())
from mutexctl.cli.app import run
code = run(sys.argv[1:])
import gc; gc.collect()
print(code, " ".join(Listener.names))
"""


def command_counts(exe: Path, env: dict[str, str], argv: list[str]) -> str:
    done = subprocess.run([str(exe), "-c", _COUNT, *argv], env=env, capture_output=True, text=True, check=False,
                          cwd=NEUTRAL_DIR)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return last.split(" ", 1)[-1] if done.returncode == 0 else f"(failed: {done.stderr[-200:]})"


def bench_mongodb(uri: str, work: Path, exe: Path, runs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))
    from mongo_server import with_database

    store = with_database(uri, "bench")
    env = dict(os.environ, MUTEXCTL_STORE=store, MUTEXCTL_NODE_ID="bench", XDG_CONFIG_HOME=str(work), NO_COLOR="1")
    script = str(exe.parent / "mutexctl")
    rows = measure([("python -c 'import pymongo' (floor)", [str(exe), "-c", "import pymongo"]),
                    ("mutexctl acquire x -- true", [script, "acquire", "x", "--", "true"]),
                    ("mutexctl status", [script, "status"])], env, runs)
    floor = rows[0][1]
    print("== MongoDB")
    table(rows, floor, "import pymongo")
    cycle = rows[1][1] / floor
    print(f"CLI cycle / import pymongo: {cycle:.2f}x (target <= 1.3x): {'OK' if cycle <= 1.3 else 'MISSED'}")
    for label, argv in (("acquire x -- true", ["acquire", "x", "--", "true"]), ("status", ["status"])):
        print(f"commands sent by one 'mutexctl {label}' (store not initialized): {command_counts(exe, env, argv)}")
    subprocess.run([script, "init-schema"], env=env, capture_output=True, check=True, cwd=NEUTRAL_DIR)
    print(f"... after init-schema: {command_counts(exe, env, ['acquire', 'x', '--', 'true'])}")
    ours, raw, minimal = rates([library_pair(store), raw_pair(store), minimal_pair(store)], rounds=9)
    ratio = raw / ours
    print(f"library acquire+release: {ours:.0f} pairs/s; raw find_one_and_update pairs: {raw:.0f}/s; "
          f"cost ratio {ratio:.2f}x (target <= 1.1x): {'OK' if ratio <= 1.1 else 'MISSED'}")
    print(f"README's minimal P/V for other services (seed string form only): {minimal:.0f} pairs/s; "
          f"mutexctl's pair costs {minimal / ours:.2f}x that (reading every value form on the server)")


def clean_venv() -> Path:
    """A venv holding only this checkout's mutexctl (not editable) and its dependencies."""
    venv = Path(__file__).resolve().parent.parent / ".cache" / "bench-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--force-reinstall", "--no-deps", str(venv.parent.parent)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(venv.parent.parent)], check=True)  # the dependencies, once
    return python


def compile_package() -> None:
    """Write the package's .pyc files, as an installed package has them (a PYTHONDONTWRITEBYTECODE
    environment would otherwise make every measured run compile mutexctl from source)."""
    import compileall

    import mutexctl

    compileall.compile_dir(str(Path(mutexctl.__file__).parent), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def main() -> None:
    compile_package()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mongodb", default=None, help="a MongoDB URI; default: start mongoeco")
    parser.add_argument("--no-mongodb", action="store_true")
    parser.add_argument("--python", default=None, help="the interpreter of the venv to time (default: a clean one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mutexctl-bench-"))
    exe = Path(args.python) if args.python else clean_venv()
    try:
        bench_sqlite(work, exe, args.runs)
        if args.no_mongodb:
            return
        uri, server = args.mongodb, None
        if uri is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))
            from mongo_server import MongoServer

            server = MongoServer()
            uri = server.start()
        try:
            bench_mongodb(uri, work, exe, args.runs)
        finally:
            if server is not None:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
