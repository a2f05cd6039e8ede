"""Read commands never make a store: a named one that does not exist is exit 78 naming it (a typo
must not read as "nothing is held"); the default one, not made yet, reads as empty with a line saying so."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from mutexctl.schema import STEPS

from ..conftest import BUSY_S, Cli, wait_until

READS = [
    ("status",),
    ("status", "deploy", "--held"),
    ("--json", "status"),
    ("status", "--watch", "--interval", "100ms"),
    ("history",),
    ("doctor",),
    ("metrics",),
    ("nodes",),
    ("init-schema", "--check"),
    ("init-schema", "--dry-run"),
]


# What a store with nothing in it answers, where that is not 0: --held finds nothing held (1); the
# schema check and the node list (which needs broadcast's tables) find no schema (4).
EMPTY_EXIT = {("status", "deploy", "--held"): 1, ("init-schema", "--check"): 4, ("nodes",): 4}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


@pytest.mark.parametrize("args", [a for a in READS if "--dry-run" not in a], ids=" ".join)
def test_a_named_store_that_does_not_exist_is_exit_78_and_nothing_is_made(tmp_path: Path,
                                                                         args: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    typo = tmp_path / "typo" / "mutexctl.db"
    cli = Cli(f"sqlite://{typo}", home)
    before = _files(tmp_path)
    done = cli(*args, timeout=20 * BUSY_S)
    assert done.returncode == 78, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    where = done.stdout if args[0] in ("--json", "doctor") else done.stderr  # (doctor: its failed store check)
    assert str(typo) in where and "does not exist" in where, where
    if args[0] == "--json":
        assert json.loads(done.stdout)["error"]["exit_code"] == 78
    assert _files(tmp_path) == before  # not the directory, not the file, not -wal or -shm


@pytest.mark.parametrize("source", ["flag", "config"])
def test_a_store_named_by_flag_or_parameter_file_is_checked_too(tmp_path: Path, source: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    typo = tmp_path / "nonexistent-dir" / "x.db"
    cli = Cli("unused", home)
    del cli.env["MUTEXCTL_STORE"]
    if source == "flag":
        done = cli("--store", f"sqlite://{typo}", "status")
    else:
        (home / "p.yaml").write_text(f"store: sqlite://{typo}\n")
        done = cli("--config", str(home / "p.yaml"), "status")
    assert done.returncode == 78, (done.stdout, done.stderr)
    assert str(typo) in done.stderr
    assert not typo.parent.exists()


@pytest.mark.parametrize("args", [a for a in READS if "--watch" not in a], ids=" ".join)
def test_the_default_store_not_made_yet_reads_as_empty_and_says_so(tmp_path: Path, args: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli("unused", home)
    del cli.env["MUTEXCTL_STORE"]  # the default: $XDG_STATE_HOME/mutexctl/mutexctl.db
    done = cli(*args, timeout=20 * BUSY_S)
    assert done.returncode == EMPTY_EXIT.get(args, 0), (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    if done.returncode == 4:  # what an empty store answers: its schema is not initialized (the hint says how)
        assert "not initialized" in done.stderr and "init-schema" in done.stderr
    else:
        assert "does not exist yet" in done.stderr and "shown empty" in done.stderr, done.stderr
    if args == ("--json", "status"):
        assert json.loads(done.stdout)["mutexes"] == []
    assert not (home / ".state" / "mutexctl").exists()  # nothing made: no directory, no file


def test_a_watcher_of_the_default_store_sees_it_once_a_lock_command_makes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli("unused", home)
    del cli.env["MUTEXCTL_STORE"]
    watch = cli.popen("--json", "status", "--watch", "--interval", "100ms")
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first["mutexes"] == []
        assert not (home / ".state" / "mutexctl").exists()
        taken = cli("acquire", "deploy", "--timeout", "1h")
        assert taken.returncode == 0, taken.stderr

        def seen() -> bool:
            doc = json.loads(watch.stdout.readline())  # type: ignore[union-attr]
            return any(m["mutex"] == "deploy" and m["state"] == "held" for m in doc["mutexes"])

        wait_until(seen, timeout=20 * BUSY_S)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.communicate(timeout=20 * BUSY_S)
        except subprocess.TimeoutExpired:
            watch.kill()
    assert watch.returncode == 0


def test_a_lock_command_on_a_new_named_path_still_makes_the_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    fresh = tmp_path / "new" / "mutexctl.db"
    cli = Cli(f"sqlite://{fresh}", home)
    assert cli("acquire", "deploy").returncode == 0
    assert fresh.exists()
    done = cli("status", "deploy", "--held")
    assert done.returncode == 0 and "deploy" in done.stdout


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_read_commands_make_no_mongodb_database(cli: Cli, store_url: str) -> None:
    import pymongo

    with pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000) as client:
        name = client.get_default_database().name
        for args in READS:
            if "--watch" in args:
                continue
            done = cli(*args, timeout=20 * BUSY_S)
            expected = 1 if args == ("doctor",) else EMPTY_EXIT.get(args, 0)  # (doctor: "run init-schema")
            assert done.returncode == expected, (args, done.returncode, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            assert name not in client.list_database_names(), (args, client[name].list_collection_names())


def test_config_show_names_a_missing_store_without_making_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    typo = tmp_path / "typo" / "mutexctl.db"
    done = Cli(f"sqlite://{typo}", home)("config", "show")
    assert done.returncode == 0 and str(typo) in done.stdout, (done.stdout, done.stderr)
    assert not typo.parent.exists()


def test_a_dry_run_on_a_store_not_made_yet_lists_every_step_and_makes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    fresh = tmp_path / "new" / "mutexctl.db"
    done = Cli(f"sqlite://{fresh}", home)("init-schema", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("would apply")] == \
           [f"would apply step {step.number}" for step in STEPS]
    assert "does not exist yet" in done.stderr
    assert not fresh.parent.exists()
