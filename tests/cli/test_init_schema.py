"""init-schema: versioned steps under a mutex, many runners at once, checks, and a newer store refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mutexctl
import pytest
from mutexctl import SCHEMA_VERSION, Service
from mutexctl.schema import STEPS

from ..conftest import HELPERS, Cli, store_rows

STEP_NUMBERS = [step.number for step in STEPS]


def test_init_applies_every_step_once_and_records_the_meta_record(cli: Cli, service: Service) -> None:
    done = cli("init-schema")
    assert done.returncode == 0, done.stderr
    assert f"schema version 0 -> {SCHEMA_VERSION}" in done.stdout
    state = service.schema()
    assert state is not None
    assert (state.version, state.applied_by, state.tool_version) == (SCHEMA_VERSION, "cli-node", mutexctl.__version__)
    assert [s.step for s in state.steps] == STEP_NUMBERS


def test_a_second_run_finds_the_store_up_to_date(cli: Cli, service: Service) -> None:
    cli("init-schema")
    done = cli("init-schema")
    assert done.returncode == 0 and "up to date; nothing to do" in done.stdout
    assert [s.step for s in service.schema().steps] == STEP_NUMBERS


def test_eight_concurrent_runs_all_succeed_and_apply_each_step_exactly_once(cli: Cli, service: Service) -> None:
    procs = [cli.popen("init-schema", "--json", "--wait", "60s", env={"MUTEXCTL_NODE_ID": f"runner-{i}"})
             for i in range(8)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    assert [code for _, code in results] == [0] * 8, [err for (_, err), _ in results]
    documents = [json.loads(out) for (out, _), _ in results]
    assert sum(1 for d in documents if d["applied"]) == 1  # one runner applied, the others were up to date
    assert all(d["version"] == SCHEMA_VERSION for d in documents)
    assert Counter(s.step for s in service.schema().steps) == Counter(STEP_NUMBERS)


def test_a_run_killed_after_a_step_leaves_a_store_the_next_run_completes(store_url: str, cli: Cli,
                                                                         service: Service) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    killed = subprocess.run([sys.executable, str(HELPERS / "init_then_die.py"), store_url, "1", "1s"], env=env)
    assert killed.returncode == -9
    assert service.schema().version == 1
    done = cli("init-schema", "--wait", "30s")  # waits for the dead runner's 1 s lease to expire
    assert done.returncode == 0, done.stderr
    state = service.schema()
    assert state.version == SCHEMA_VERSION
    assert [s.step for s in state.steps] == STEP_NUMBERS
    assert [s.applied_by for s in state.steps][:2] == ["doomed", "cli-node"]


def test_check_exits_4_naming_both_versions_unless_the_store_is_current(cli: Cli, service: Service) -> None:
    assert cli("acquire", "made", "--", "true").returncode == 0  # the store exists, never initialized
    done = cli("init-schema", "--check")
    assert done.returncode == 4 and "not initialized" in done.stderr and str(SCHEMA_VERSION) in done.stderr
    service.store.record_schema_step(1, "old-tool", "0.0.1")
    done = cli("init-schema", "--check")
    assert done.returncode == 4 and f"at version 1, this tool's is {SCHEMA_VERSION}" in done.stderr
    cli("init-schema")
    done = cli("init-schema", "--check")
    assert done.returncode == 0 and "up to date" in done.stdout
    service.store.record_schema_step(SCHEMA_VERSION + 1, "new-tool", "9.0.0")
    done = cli("init-schema", "--check", "--json")
    assert done.returncode == 4 and json.loads(done.stdout)["error"]["exit_code"] == 4


def test_a_store_newer_than_the_tool_refuses_every_write_with_exit_4(cli: Cli, service: Service,
                                                                   store_url: str) -> None:
    token = cli("acquire", "held").stdout.strip()
    service.store.record_schema_step(SCHEMA_VERSION + 1, "new-tool", "9.0.0")
    before = store_rows(store_url)
    for args in (["acquire", "job"], ["acquire", "job", "--", "true"], ["release", "held", "--token", token],
                 ["release", "held", "--force", "--reason", "x"], ["init-schema"]):
        done = cli(*args)
        assert done.returncode == 4, (args, done.stderr)
        assert f"newer than this tool's {SCHEMA_VERSION}" in done.stderr
    assert store_rows(store_url) == before
    status = cli("status")
    assert status.returncode == 0 and f"version {SCHEMA_VERSION + 1} (NEWER" in status.stdout


def test_lock_commands_work_on_a_never_initialized_store(cli: Cli, service: Service) -> None:
    token = cli("acquire", "job").stdout.strip()
    assert cli("release", "job", "--token", token).returncode == 0
    assert service.schema() is None
    assert "not initialized" in cli("status").stdout


def test_dry_run_lists_the_steps_and_changes_nothing(cli: Cli, store_url: str) -> None:
    before = store_rows(store_url)
    done = cli("init-schema", "--dry-run")
    assert done.returncode == 0
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("would apply")] == \
           [f"would apply step {n}" for n in STEP_NUMBERS]
    assert store_rows(store_url) == before
    cli("init-schema")
    assert "nothing would change" in cli("init-schema", "--dry-run").stdout


def test_dry_run_and_check_exclude_each_other(cli: Cli) -> None:
    assert cli("init-schema", "--dry-run", "--check").returncode == 2


def test_the_output_shows_the_server_checks(cli: Cli, store_url: str) -> None:
    document = json.loads(cli("init-schema", "--json").stdout)
    server = document["server"]
    if store_url.startswith("mongodb"):
        assert server["engine"].startswith("MongoDB ") and server["write_concern"] == "w=majority"
        assert server["topology"] in ("standalone", "sharded cluster (mongos)") or \
               server["topology"].startswith("replica set ")
    else:
        assert server["engine"].startswith("SQLite ") and server["journal"] == "wal"


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_the_ttl_indexes_exist_on_mongodb(cli: Cli, store_url: str) -> None:
    import pymongo

    done = cli("init-schema")
    assert done.returncode == 0, done.stderr
    with pymongo.MongoClient(store_url) as client:
        db = client.get_default_database()
        ttl = {name: {i["name"]: i.get("expireAfterSeconds") for i in db[name].list_indexes()}
               for name in ("forced_releases", "messages", "nodes", "history")}
    assert ttl["forced_releases"]["at_ttl"] == 90 * 24 * 3600
    assert ttl["messages"]["at_ttl"] == 7 * 24 * 3600
    assert ttl["nodes"]["lastSeen_ttl"] == 7 * 24 * 3600  # a registration lives as long as the log
    assert ttl["history"]["at_ttl"] == 30 * 24 * 3600  # the lease history: history_retention


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_a_changed_log_retention_is_applied_by_the_next_init(cli: Cli, store_url: str) -> None:
    import pymongo

    def kept() -> int:
        with pymongo.MongoClient(store_url) as client:
            return client.get_default_database()["messages"].index_information()["at_ttl"]["expireAfterSeconds"]

    cli("init-schema")
    shorter = {"MUTEXCTL_LOG_RETENTION": "24h"}
    dry = cli("init-schema", "--dry-run", env=shorter)
    assert dry.returncode == 0 and "would change broadcast log retention 7d00h -> 24h00m" in dry.stdout
    assert kept() == 7 * 24 * 3600
    done = cli("init-schema", "--json", env=shorter)
    assert json.loads(done.stdout)["log_retention_change"] == {"before_s": 7 * 24 * 3600, "after_s": 24 * 3600}
    assert kept() == 24 * 3600
    again = cli("init-schema", env=shorter)
    assert "nothing to do" in again.stdout and "retention" not in again.stdout
    assert cli("init-schema", "--check").returncode == 0  # the version gate is about steps only


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_node_registrations_kept_24h_by_an_older_store_are_kept_as_long_as_the_log_after_init(
        cli: Cli, store_url: str) -> None:
    import pymongo

    cli("init-schema")
    with pymongo.MongoClient(store_url) as client:  # as mutexctl before this release set it up
        nodes = client.get_default_database()["nodes"]
        nodes.drop_index("lastSeen_ttl")
        nodes.create_index("lastSeen", name="lastSeen_ttl", expireAfterSeconds=24 * 3600)
    dry = cli("init-schema", "--dry-run")
    assert dry.returncode == 0 and "would change broadcast log retention 24h00m -> 7d00h" in dry.stdout
    assert cli("init-schema").returncode == 0
    with pymongo.MongoClient(store_url) as client:
        index = client.get_default_database()["nodes"].index_information()["lastSeen_ttl"]
    assert index["expireAfterSeconds"] == 7 * 24 * 3600


def test_servers_older_than_4_2_are_refused() -> None:
    from mutexctl import StoreUnavailableError
    from mutexctl.stores.mongodb.schema import check_server_version

    assert check_server_version({"version": "4.2.0", "versionArray": [4, 2, 0, 0]}) == "4.2.0"
    assert check_server_version({"version": "7.0.14"}) == "7.0.14"
    with pytest.raises(StoreUnavailableError, match=r"MongoDB 4\.0\.3 is too old"):
        check_server_version({"version": "4.0.3", "versionArray": [4, 0, 3, 0]})
