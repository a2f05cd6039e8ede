"""`mutexctl doctor` (one verdict and a fix per check; exit 0 all pass, 1 any warns) and
`mutexctl metrics` (the Prometheus text format), on both stores, from real processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mutexctl import doctor
from mutexctl.config import Settings
from mutexctl.models import Holder, LeaseRequest, iso_ms
from mutexctl.service import Service
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import Cli, wait_until


def checks(cli: Cli) -> tuple[int, dict[str, dict[str, Any]]]:
    done = cli("--json", "doctor")
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is (done.returncode == 0)
    return done.returncode, {c["check"]: c for c in document["checks"]}


def test_a_healthy_store_passes_every_check(cli: Cli, store_url: str) -> None:
    assert cli("init-schema").returncode == 0
    code, found = checks(cli)
    assert code == 0, found
    assert list(found) == ["config", "store", "clock", "topology", "schema", "holders", "listeners"]
    assert all(c["status"] == "ok" for c in found.values())
    assert found["config"]["node_id"] == "cli-node" and found["store"]["round_trip_ms"] >= 0
    if store_url.startswith("sqlite"):  # its clock is this host's: nothing to measure against itself
        assert found["clock"]["offset_ms"] is None and "the store's clock is this host's" in found["clock"]["message"]
    else:
        assert abs(found["clock"]["offset_ms"]) < 1000
    text = cli("doctor")
    assert text.returncode == 0 and text.stdout.splitlines()[-1] == "# all checks passed"
    assert all(line.startswith("ok ") for line in text.stdout.splitlines()[:-1])


def test_each_problem_warns_with_its_fix_and_exit_1(cli: Cli, store_url: str) -> None:
    assert cli("acquire", "made", "--", "true").returncode == 0  # the store exists, never initialized
    code, found = checks(cli)
    assert code == 1 and found["schema"]["status"] == "warn" and "init-schema" in found["schema"]["fix"]
    assert cli("init-schema").returncode == 0
    # a lease whose service died on this host without releasing it
    died = subprocess.run([sys.executable, "-c", "import os; from mutexctl import Service, load_settings; "
                           "Service(load_settings()).try_acquire('orphan', timeout='10m'); os._exit(0)"],
                          env=cli.env, cwd=cli.cwd, capture_output=True, text=True, timeout=60)
    assert died.returncode == 0, died.stderr
    # a listener killed five minutes ago
    listener = cli.popen("listen", "--", "true")
    wait_until(lambda: any(n["live"] for n in json.loads(cli("--json", "nodes").stdout)["nodes"]), timeout=60)
    listener.kill()
    listener.communicate(timeout=60)
    _age_heartbeats(store_url, minutes=5)
    code, found = checks(cli)
    assert code == 1
    assert found["holders"]["status"] == "warn" and "orphan" in found["holders"]["message"]
    assert found["holders"]["leases"][0]["mutex"] == "orphan" and "--force" in found["holders"]["fix"]
    assert found["listeners"]["status"] == "warn" and found["listeners"]["silent"][0]["node"] == "cli-node"
    assert "cli-node on default (5m" in found["listeners"]["message"]
    text = cli("doctor")
    lines = text.stdout.splitlines()
    assert text.returncode == 1 and lines[-1] == "# 2 of 7 checks need attention"
    warn = next(i for i, line in enumerate(lines) if line.startswith("warn  holders"))
    assert lines[warn + 1].strip().startswith("fix: ")


def test_what_is_normal_is_no_warning(cli: Cli, store_url: str) -> None:
    assert cli("init-schema").returncode == 0
    assert cli("acquire", "nightly", "--timeout", "1h").returncode == 0  # token mode: its process exits at once
    assert cli("listen", "--once", "--", "true").returncode == 0  # it stops by itself
    code, found = checks(cli)
    assert code == 0, found
    assert found["holders"]["token_mode"] == 1 and "1 token-mode lease(s), held on purpose" in \
        found["holders"]["message"]
    nodes = json.loads(cli("--json", "nodes").stdout)["nodes"]
    assert [bool(n["left_at"]) for n in nodes] == [True]
    _age_heartbeats(store_url, minutes=5)  # long after it stopped by itself: not "gone silent"
    code, found = checks(cli)
    assert code == 0 and found["listeners"]["left"] == 1 and found["listeners"]["silent"] == [], found
    assert "1 stopped by themselves" in found["listeners"]["message"]
    assert "left" in cli("nodes").stdout.splitlines()[1].split()
    lines = cli("doctor").stdout.splitlines()
    assert lines[0].startswith("ok    config     no file (flags"), lines[0]  # (not "config config no file")
    assert lines[-1] == "# all checks passed"


def test_an_unreachable_store_fails_in_one_check(cli: Cli) -> None:
    done = cli("doctor", env={"MUTEXCTL_STORE": "mongodb://127.0.0.1:1/?connectTimeoutMS=500"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("fail  store") and "unreachable" in lines[1] and lines[2].strip().startswith("fix:")
    assert lines[-1] == "# 1 of 2 checks need attention"


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)  # (SQLite: mutexId is the primary key)
def test_a_missing_unique_index_is_named(cli: Cli, store_url: str) -> None:
    import pymongo

    assert cli("init-schema").returncode == 0
    with pymongo.MongoClient(store_url) as client:
        client.get_default_database()["mutexes"].drop_index("mutexId_1")
    code, found = checks(cli)
    assert code == 1 and found["schema"]["status"] == "warn" and "unique index on mutexId" in found["schema"]["message"]
    assert cli("init-schema").returncode == 0 and checks(cli)[0] == 0


def _age_heartbeats(store_url: str, *, minutes: int) -> None:
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite://")) as db:
            db.execute("UPDATE nodes SET lastSeen = ?", (iso_ms(then),))
        return
    import pymongo

    with pymongo.MongoClient(store_url) as client:
        client.get_default_database()["nodes"].update_many({}, {"$set": {"lastSeen": then}})


class _Store:
    def __init__(self, report: dict[str, str], offset: timedelta = timedelta(0)) -> None:
        self.report, self.offset, self.clock = report, offset, "server"

    def server_report(self) -> dict[str, str]:
        return self.report

    def store_time(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.parametrize(("topology", "concern", "status"), [
    ("replica set rs0", "w=1", "warn"), ("replica set rs0", "", "warn"), ("replica set rs0", "w=majority", "ok"),
    ("standalone", "", "ok"), ("sharded cluster (mongos)", "w=majority", "ok")])
def test_w1_against_a_replica_set_warns(topology: str, concern: str, status: str) -> None:
    svc: Any = SimpleNamespace(store=_Store({"engine": "MongoDB 7.0.0", "topology": topology,
                                             "write_concern": concern}))
    found = doctor._topology(svc)
    assert found.status == status
    assert (found.fix is not None and "w=majority" in found.fix) is (status == "warn")


@pytest.mark.parametrize(("offset_s", "status"), [(0, "ok"), (5, "warn"), (-5, "warn")])
def test_a_clock_far_from_the_store_s_warns(offset_s: int, status: str) -> None:
    svc: Any = SimpleNamespace(store=_Store({}, timedelta(seconds=offset_s)))
    found = doctor._clock(svc)
    assert found.status == status and abs(found.data["offset_ms"] - offset_s * 1000) < 500  # type: ignore[index]
    if offset_s:
        assert ("behind" in found.message) is (offset_s > 0)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_leases_slots_and_the_history(cli: Cli, tmp_path: Path, store_url: str) -> None:
    assert cli("acquire", "a", "--timeout", "1m").returncode == 0
    assert cli("acquire", "s", "--limit", "3", "--timeout", "1m").returncode == 0
    for _ in range(2):
        assert cli("acquire", "b", "--", "sleep", "0.2").returncode == 0
    assert cli("acquire", "c", "--timeout", "1m").returncode == 0
    assert cli("release", "c", "--force", "--reason", "test").returncode == 0
    with Service(Settings(node_id="w", store=store_url)) as waiting:  # one process queued for a (fresh for 3 s)
        waiting.store.prepare_writes()
        waiting.store.wait_turn(LeaseRequest("a", "w", 5000, Holder("h", 1, "u", "c")), token="t", waited_ms=0)
    done = cli("metrics")
    assert done.returncode == 0, done.stderr
    found = samples(done.stdout)
    assert found[("mutexctl_mutex_held", (("mutex", "a"),))] == 1
    assert found[("mutexctl_mutex_held", (("mutex", "b"),))] == 0
    assert found[("mutexctl_mutex_waiters", (("mutex", "a"),))] == 1
    assert found[("mutexctl_mutex_waiters", (("mutex", "b"),))] == 0
    assert 0 <= found[("mutexctl_mutex_longest_wait_seconds", (("mutex", "a"),))] < 60
    assert 50 < found[("mutexctl_mutex_seconds_left", (("mutex", "a"),))] <= 60
    assert found[("mutexctl_mutex_holders", (("kind", "semaphore"), ("mutex", "s")))] == 1
    assert found[("mutexctl_mutex_limit", (("mutex", "s"),))] == 3
    assert found[("mutexctl_mutex_fence", (("mutex", "b"),))] == 2
    assert found[("mutexctl_forced_releases_total", (("mutex", "c"),))] == 1
    assert ("mutexctl_forced_releases_total", (("mutex", "a"),)) not in found
    assert found[("mutexctl_hold_seconds_count", (("mutex", "b"),))] == 2
    assert 0.4 <= found[("mutexctl_hold_seconds_sum", (("mutex", "b"),))] < 10
    assert found[("mutexctl_hold_seconds_bucket", (("le", "0.1"), ("mutex", "b")))] == 0
    assert found[("mutexctl_hold_seconds_bucket", (("le", "+Inf"), ("mutex", "b")))] == 2
    assert found[("mutexctl_wait_seconds_count", (("mutex", "b"),))] == 2
    # for node_exporter: written whole, by a rename
    target = tmp_path / "textfile" / "mutexctl.prom"
    target.parent.mkdir()
    assert cli("metrics", "--textfile", str(target)).returncode == 0
    assert samples(target.read_text())[("mutexctl_mutex_held", (("mutex", "a"),))] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["mutexctl.prom"]


def test_json_metrics_is_the_same_reading_as_a_json_document(cli: Cli) -> None:
    assert cli("acquire", "a", "--timeout", "1m").returncode == 0
    done = cli("--json", "metrics")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # one JSON document, not Prometheus text
    assert document["ok"] is True and document["store"]
    families = {f["name"]: f for f in document["metrics"]}
    assert families["mutexctl_mutex_held"]["type"] == "gauge"
    assert {"name": "mutexctl_mutex_held", "labels": {"mutex": "a"}, "value": 1.0} in \
        families["mutexctl_mutex_held"]["samples"]
    text = samples(cli("metrics").stdout)
    from_json = {(s["name"], tuple(sorted(s["labels"].items()))) for f in document["metrics"] for s in f["samples"]}
    assert from_json == {key for key in text if key[0] != "mutexctl_mutex_seconds_left"} | \
        {key for key in from_json if key[0] == "mutexctl_mutex_seconds_left"}


def test_the_kind_label_of_holders_never_flips(cli: Cli) -> None:
    def holders() -> dict[str, float]:
        found = samples(cli("metrics").stdout)
        return {dict(labels)["kind"]: value for (name, labels), value in found.items()
                if name == "mutexctl_mutex_holders" and dict(labels)["mutex"] == "m"}

    seen = []
    assert cli("acquire", "m", "--", "true").returncode == 0
    seen.append(holders())  # free
    for flags in (["--timeout", "1m"], ["--shared", "--timeout", "1m"], ["--limit", "2", "--timeout", "1m"]):
        token = cli("acquire", "m", *flags)
        assert token.returncode == 0, token.stderr
        seen.append(holders())
        assert cli("release", "m", "--token", token.stdout.strip()).returncode == 0
    assert [sorted(s) for s in seen] == [["exclusive", "semaphore", "shared"]] * 4  # the same series each time
    assert seen == [{"exclusive": 0, "shared": 0, "semaphore": 0}, {"exclusive": 1, "shared": 0, "semaphore": 0},
                    {"exclusive": 0, "shared": 1, "semaphore": 0}, {"exclusive": 0, "shared": 0, "semaphore": 1}]


@pytest.mark.parametrize(("where", "why"), [("missing/dir/x.prom", "its directory does not exist"),
                                            (".", "it is a directory")])
def test_metrics_to_a_place_it_cannot_write_is_exit_78(cli: Cli, tmp_path: Path, where: str, why: str) -> None:
    done = cli("metrics", "--textfile", str(tmp_path / where))
    assert done.returncode == 78 and why in done.stderr and "Traceback" not in done.stderr, done.stderr
