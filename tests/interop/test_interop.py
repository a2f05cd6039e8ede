"""Interop: a service that is not ours (Node.js, the official ``mongodb`` driver) shares one mutex with
mutexctl's CLI (exec mode) and library (P/V, lock()). Every critical section, on either side, logs
enter/exit on CLOCK_MONOTONIC; a phase fails on any overlap and when a side got no turns.

The Node side runs README.md's P/V ("Sharing mutexes with other services") or the naive forms real
services write (an ObjectId _id, takenAt as a Date, epoch number, epoch string or ISO with an offset,
a double timeout, V by mutexId only). Run with ``-s`` to see the sections and overlaps per phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymongo
import pytest
from bson import ObjectId
from mutexctl import LeaseLostError, Service, Settings

from ..conftest import HELPERS, Cli, mongodb_required, wait_until
from ..helpers.node_client import NodeUnavailableError, ensure_driver, service_argv

on_mongodb = pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)

SECONDS = 6.0
NAIVE_STYLES = ("naive-date", "naive-epoch", "naive-epoch-string", "naive-double-timeout", "naive-iso-offset")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    try:
        return ensure_driver()
    except NodeUnavailableError as exc:
        if mongodb_required():
            pytest.fail(f"the interop suite could not run: {exc}", pytrace=False)
        pytest.skip(f"the interop suite needs Node.js: {exc}")


@pytest.fixture
def collection(store_url: str) -> Iterator[pymongo.collection.Collection]:
    with pymongo.MongoClient(store_url) as client:
        yield client.get_default_database()["mutexes"]


@dataclass(frozen=True)
class Section:
    who: str
    start: int
    end: int | None  # None: the process died inside it


def read_sections(log: Path) -> list[Section]:
    sections, open_at = [], {}
    for line in log.read_text().splitlines():
        what, who, ns = line.split()
        if what == "enter":
            assert who not in open_at, f"{who} entered twice without leaving"
            open_at[who] = int(ns)
        else:
            sections.append(Section(who, open_at.pop(who), int(ns)))
    sections += [Section(who, start, None) for who, start in open_at.items()]
    return sorted(sections, key=lambda s: s.start)


def overlaps(sections: list[Section]) -> list[str]:
    """Every pair of sections that were inside at the same time, as text."""
    found, last = [], None
    for section in sections:
        if last is not None and (last.end is None or section.start < last.end):
            found.append(f"{section.who} entered {(last.end or section.start) - section.start} ns before "
                         f"{last.who} left")
        if last is None or last.end is None or (section.end is not None and section.end > last.end):
            last = section
    return found


@dataclass(frozen=True)
class Side:
    name: str
    kind: str  # "node" or "mutexctl"
    argv: list[str]


def mutexctl_side(mode: str, store_url: str, mutex: str, who: str, log: Path, timeout: str, hold_ms: int) -> Side:
    return Side(who, "mutexctl", [sys.executable, str(HELPERS / "interop_side.py"), mode, store_url, mutex, who,
                                  str(log), timeout, str(hold_ms), str(SECONDS)])


def node_side(store_url: str, mutex: str, who: str, log: Path, style: str, timeout_ms: int, hold_ms: int,
              pause_ms: int = 300) -> Side:
    """A Node process; after each V it pauses ``pause_ms`` (mutexctl's waiters back off up to 1 s and
    would otherwise rarely find the mutex free: fewer of its sections would be checked)."""
    return Side(who, "node", service_argv(store_url, mutex, who, log, style=style, timeout_ms=timeout_ms,
                                          hold_ms=hold_ms, seconds=SECONDS, pause_ms=pause_ms))


def run_phase(phase: str, sides: list[Side], log: Path, node_modules: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTEXCTL_")}
    env["NODE_PATH"] = str(node_modules)
    procs = [subprocess.Popen(side.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for side in sides]
    results = {}
    for side, proc in zip(sides, procs, strict=True):
        out, err = proc.communicate(timeout=SECONDS + 90)
        assert proc.returncode == 0, f"{side.name} failed ({proc.returncode}): {err[-2000:]}"
        results[side.name] = json.loads(out.strip().splitlines()[-1])
    sections = read_sections(log)
    found = overlaps(sections)
    per_side = {kind: sum(1 for s in sections if s.who in {x.name for x in sides if x.kind == kind})
                for kind in ("node", "mutexctl")}
    print(f"\ninterop phase {phase}: {len(sections)} sections ({per_side['node']} node, "
          f"{per_side['mutexctl']} mutexctl), {len(found)} overlapping; per process "
          + ", ".join(f"{name} {r['turns']}" + (f" (lost {r['lost']})" if r.get("lost") else "")
                      for name, r in results.items()))
    assert not found, f"{len(found)} overlapping critical sections: {found[:5]}"
    assert all(s.end is not None for s in sections), "a critical section never ended"
    assert per_side["node"] > 0 and per_side["mutexctl"] > 0, f"a side got no turns: {per_side}"


@on_mongodb
def test_readme_P_and_V_share_a_mutex_with_exec_mode_whose_sections_outlast_the_foreign_timeout(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path) -> None:
    assert cli("init-schema").returncode == 0
    log = tmp_path / "sections.log"
    sides = [node_side(store_url, "shared", f"js-{i}", log, "readme", timeout_ms=400, hold_ms=100) for i in (1, 2)]
    sides += [mutexctl_side("cli", store_url, "shared", f"cli-{i}", log, "600ms", 1000) for i in (1, 2)]
    run_phase("readme P/V (timeout 400ms) vs exec mode (600ms lease, 1s sections)", sides, log, node_modules)


@on_mongodb
def test_readme_P_and_V_with_sections_longer_than_mutexctl_timeouts_share_a_mutex_with_library_P_and_V(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path) -> None:
    assert cli("init-schema").returncode == 0
    log = tmp_path / "sections.log"
    sides = [node_side(store_url, "shared", "js-long", log, "readme", timeout_ms=3000, hold_ms=800)]
    sides += [mutexctl_side("pv", store_url, "shared", f"pv-{i}", log, "500ms", 150) for i in (1, 2)]
    run_phase("readme P/V (800ms sections) vs library P/V (500ms timeout)", sides, log, node_modules)


@on_mongodb
def test_naive_services_in_every_value_form_share_a_mutex_with_library_lock_and_P_and_V(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path,
        collection: pymongo.collection.Collection) -> None:
    assert cli("init-schema").returncode == 0
    collection.insert_one({"_id": ObjectId(), "mutexId": "shared", "taken": False})  # a service's own document
    log = tmp_path / "sections.log"
    sides = [node_side(store_url, "shared", style, log, style, timeout_ms=1500, hold_ms=250) for style in NAIVE_STYLES]
    sides += [mutexctl_side("lock", store_url, "shared", "lock-1", log, "500ms", 900),
              mutexctl_side("pv", store_url, "shared", "pv-1", log, "400ms", 100)]
    run_phase("naive forms, ObjectId _id, V by mutexId (1.5s timeout) vs library lock() (500ms lease, 900ms "
              "sections) and P/V", sides, log, node_modules)
    assert collection.count_documents({"mutexId": "shared"}) == 1


@on_mongodb
def test_readme_and_naive_services_share_a_mutex_with_the_asyncio_api_s_lock_and_P_and_V(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path) -> None:
    assert cli("init-schema").returncode == 0
    log = tmp_path / "sections.log"
    sides = [node_side(store_url, "shared", "js-readme", log, "readme", timeout_ms=1500, hold_ms=250),
             node_side(store_url, "shared", NAIVE_STYLES[0], log, NAIVE_STYLES[0], timeout_ms=1500, hold_ms=250)]
    sides += [mutexctl_side("alock", store_url, "shared", "alock-1", log, "500ms", 900),
              mutexctl_side("apv", store_url, "shared", "apv-1", log, "400ms", 100)]
    run_phase("readme and naive P/V (1.5s timeout) vs asyncio lock() (500ms lease, 900ms sections) and P/V",
              sides, log, node_modules)


@on_mongodb
def test_a_naive_V_by_mutexId_of_an_exec_mode_lease_stops_the_command_at_the_next_renewal(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path) -> None:
    job = cli.popen("acquire", "job", "--timeout", "3s", "--", "sleep", "60")
    with Service(Settings(node_id="observer", store=store_url)) as svc:
        wait_until(lambda: svc.status("job") and svc.status("job")[0].state == "held", timeout=20)
    foreign_v = subprocess.run(service_argv(store_url, "job", "js", tmp_path / "log", release_only=True),
                               env={**os.environ, "NODE_PATH": str(node_modules)}, capture_output=True, text=True,
                               timeout=60)
    assert foreign_v.returncode == 0, foreign_v.stderr
    _, err = job.communicate(timeout=20)  # the next renewal is at most 1 s away
    assert job.returncode == 75 and "renewal refused" in err and "not held" in err


@on_mongodb
def test_a_naive_V_by_mutexId_of_a_library_lock_marks_it_lost(store_url: str, node_modules: Path,
                                                             tmp_path: Path) -> None:
    with Service(Settings(node_id="node-a", store=store_url)) as svc, \
            pytest.raises(LeaseLostError, match="not held"), svc.lock("job", timeout="900ms") as held:
            done = subprocess.run(service_argv(store_url, "job", "js", tmp_path / "log", release_only=True),
                                  env={**os.environ, "NODE_PATH": str(node_modules)}, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert held.wait_lost(5), "the keeper did not notice the foreign release"


@on_mongodb
# (two shared holders, not three: three that overlap hold the mutex so steadily that the seed-only
# reader, which needs it wholly free, could go the whole phase without a turn, and the phase checks nothing)
@pytest.mark.parametrize("mode,most", [("cli:--limit,2", 2), ("cli:--shared", 2)], ids=["semaphore", "shared"])
def test_a_seed_only_service_never_sees_a_semaphore_or_shared_lock_free_while_it_is_held(
        store_url: str, cli: Cli, node_modules: Path, tmp_path: Path, mode: str, most: int) -> None:
    """README P/V (Node) against mutexctl's slot holders on one name: the seed's fields say "held"
    until the last slot ends, so no Node section overlaps any mutexctl one; mutexctl's overlap each
    other (up to the limit)."""
    assert cli("init-schema").returncode == 0
    log = tmp_path / "sections.log"
    sides = [node_side(store_url, "slots", "js-1", log, "readme", timeout_ms=1000, hold_ms=150, pause_ms=100)]
    sides += [mutexctl_side(mode, store_url, "slots", f"cli-{i}", log, "2s", 400) for i in range(most)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTEXCTL_")}
    env["NODE_PATH"] = str(node_modules)
    procs = [subprocess.Popen(side.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for side in sides]
    for side, proc in zip(sides, procs, strict=True):
        _, err = proc.communicate(timeout=SECONDS + 90)
        assert proc.returncode == 0, f"{side.name} failed ({proc.returncode}): {err[-2000:]}"
    found = read_sections(log)
    node = [s for s in found if s.who.startswith("js")]
    ours = [s for s in found if not s.who.startswith("js")]
    crossed = [f"{n.who} and {o.who}" for n in node for o in ours
               if o.start < (n.end or 0) and n.start < (o.end or 0)]
    shared_at_once = max(sum(1 for o in ours if o.start <= s.start < (o.end or 0)) for s in ours)
    print(f"\ninterop phase seed P/V vs {mode}: {len(node)} node sections, {len(ours)} mutexctl sections, "
          f"{len(crossed)} crossing, at most {shared_at_once} mutexctl inside at once")
    assert not crossed, f"a seed-only reader took the mutex while slots were held: {crossed[:5]}"
    assert node and ours, "a side got no turns"
    assert shared_at_once <= most


def test_the_overlap_check_finds_an_overlap(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("enter a 10\nenter b 15\nexit a 20\nexit b 30\nenter a 30\nexit a 40\n")
    assert overlaps(read_sections(log)) == ["b entered 5 ns before a left"]
    log.write_text("enter a 10\nexit a 20\nenter b 20\nexit b 30\n")
    assert overlaps(read_sections(log)) == []
