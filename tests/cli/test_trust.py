"""On-call trust: no silent lease breaks, no leaked secret, read-only stores, full disks, hostile input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from mutexctl import NotOwnerError, Service, Settings, StoreUnavailableError
from mutexctl.models import CLI
from mutexctl.stores.steps import SCHEMA_VERSION

from ..conftest import BUSY_S, Cli, store_rows, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_plain_release_never_ends_a_lease_a_running_command_holds(cli: Cli, service: Service) -> None:
    job = cli.popen("acquire", "deploy", "--timeout", "1m", "--", "sleep", "60")
    try:
        wait_until(lambda: service.status("deploy") and service.status("deploy")[0].state == "held", timeout=20)
        refused = cli("release", "deploy")  # the same node id: this host's name in real life
        assert refused.returncode == 3, refused.stderr
        assert "a running 'mutexctl acquire … -- CMD' holds it" in refused.stderr
        assert "--force --reason" in refused.stderr and len(refused.stderr.strip().splitlines()) == 2
        assert job.poll() is None and service.status("deploy")[0].state == "held"
        assert service.V("deploy") is False  # the seed's V without a token: the same rule
        assert service.forced_releases("deploy") == []
    finally:
        job.terminate()
        job.communicate(timeout=20)


def test_a_plain_release_still_ends_this_node_s_token_mode_lease(cli: Cli) -> None:
    assert cli("acquire", "nightly", "--timeout", "1h").returncode == 0
    assert cli("release", "nightly").returncode == 0
    assert cli("acquire", "nightly").returncode == 0  # it was free again


def test_a_plain_release_never_ends_another_user_s_token_mode_lease(cli: Cli, service: Service) -> None:
    alice, bob = ({"LOGNAME": who, "USER": who} for who in ("alice", "bob"))  # one host, one node id, two users
    assert cli("acquire", "nightly", "--timeout", "1h", env=alice).stdout.strip() == "1"
    refused = cli("release", "nightly", env=bob)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 3 and len(lines) == 2, refused.stderr
    assert "cannot release 'nightly': user alice took it" in lines[0] and "not bob" in lines[0], lines[0]
    assert lines[1] == "hint: pass the --token that acquire printed, or --force --reason to break it"
    assert service.status("nightly")[0].state == "held"
    assert cli("--json", "release", "nightly", env=bob).returncode == 3
    assert cli("release", "nightly", "--token", "1", env=bob).returncode == 0  # the token is the proof
    assert cli("acquire", "nightly", "--timeout", "1h", env=alice).returncode == 0
    assert cli("release", "nightly", "--force", "--reason", "INC-3", env=bob).returncode == 0
    assert cli("acquire", "pool", "--limit", "2", "--timeout", "1h", env=alice).returncode == 0
    slot = cli("release", "pool", env=bob)
    assert slot.returncode == 3 and "this node's slots of it were taken by user alice, not bob" in slot.stderr
    assert cli("release", "pool", env=alice).returncode == 0  # the user's own: the seed's V
    events = [e["event"] for e in json.loads(cli("--json", "history", "nightly").stdout)["events"]]
    assert events.count("refused") == 2 and "forced" in events


@pytest.mark.parametrize("url", [
    "redis://admin:s3cret@db.example/0", "mongodb://admin:p#ss@db1:27017/x", "mongodb://admin:p@ss@db1/x", "mongodb://admin:p?ss@db1/x",
    "mongodb://admin:p/ss@db1/x", "mongodb:/admin:pw-s3cret@db1/x", "mongodb:admin:pw-s3cret@db1/x",
    "mongodb://admin:pw-s3cret@db1:notaport/x", "mongodb+srv://admin:pw-s3cret@db1:27017/x"])
def test_no_url_shape_lets_a_password_into_the_error(url: str, cli: Cli) -> None:
    secret = url.split("admin:", 1)[1].rsplit("@", 1)[0]
    for args in ((), ("--json",)):
        done = cli(*args, "--store", url, "status", env={"MUTEXCTL_CONNECT_TIMEOUT": "300ms"})
        assert done.returncode in (69, 78), done.stderr
        assert secret not in done.stdout + done.stderr, (url, done.stdout + done.stderr)
        assert "Traceback" not in done.stderr


def test_a_password_on_the_command_line_is_never_stored(cli: Cli, service: Service) -> None:
    job = cli.popen("acquire", "job", "--", "sh", "-c", "sleep 30", "--uri=mongodb://admin:p#ss-w0rd@db/x")
    try:
        wait_until(lambda: service.status("job") and service.status("job")[0].state == "held", timeout=20)
        assert "p#ss-w0rd" not in json.dumps(store_rows(cli.store_url), default=str)
        assert "p#ss-w0rd" not in cli("status", "--json").stdout
    finally:
        job.terminate()
        job.communicate(timeout=20)


SECRETS_IN_ARGV = ["--password=hunter2", "--db-password", "hunter3", "token=tok4", "--api-key", "key5",
                   "Authorization: Bearer bear6", "PGPASSWORD=pg7", "mysql -psql8", "https://h/x?access_token=q9&a=1"]


def test_secret_bearing_arguments_are_masked_before_anything_is_stored(cli: Cli, service: Service) -> None:
    secrets = ["hunter2", "hunter3", "tok4", "key5", "bear6", "pg7", "sql8", "q9"]
    job = cli.popen("acquire", "job", "--timeout", "1h", "--", "sh", "-c", "sleep 30", *SECRETS_IN_ARGV)
    try:
        wait_until(lambda: service.status("job") and service.status("job")[0].state == "held", timeout=20 * BUSY_S)
        shown = [cli("status").stdout, cli("--json", "status").stdout,
                 json.dumps(store_rows(cli.store_url), default=str)]
    finally:
        job.terminate()
        job.communicate(timeout=20 * BUSY_S)
    shown += [cli("history").stdout, cli("--json", "history").stdout]
    for text in shown:
        assert not [s for s in secrets if s in text], text
    assert "--password=***" in shown[1] and "Bearer ***" in shown[1], shown[1]


def test_masking_is_linear_and_what_is_stored_is_bounded(cli: Cli, service: Service) -> None:
    service.try_acquire("held", timeout="1h")
    started = time.monotonic()
    long_reason = cli("release", "held", "--force", "--reason", "x" * 100_000)
    assert long_reason.returncode == 2 and "the limit is 1000" in long_reason.stderr
    assert time.monotonic() - started < 10  # it took 76 s when masking was quadratic
    started = time.monotonic()
    done = cli("acquire", "x", "--", "true", "y" * 30_000)
    assert done.returncode == 0 and time.monotonic() - started < 10
    [state] = service.status("x")
    assert state.holder is not None and len(state.holder.command) == 500


def _as_nobody(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the system Python as user nobody, on a copy of the package it may read."""
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "mutexctl", copy / "mutexctl", ignore=shutil.ignore_patterns("cli", "__pycache__"))
    script = tmp_path / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(copy)!r})\n{code}")
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
    for parent in tmp_path.parents:  # pytest's base directory may be private to root
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3",
                           str(script)], capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists() or not shutil.which("setpriv"),
                    reason="needs root (to become nobody), setpriv and a system python3")
@pytest.mark.parametrize("checkpointed", [False, True], ids=["with its WAL", "checkpointed"])
def test_status_works_for_a_user_who_may_only_read_the_store(tmp_path: Path, checkpointed: bool) -> None:
    folder = tmp_path / "store"
    url = f"sqlite://{folder / 'm.db'}"
    with Service(Settings(node_id="writer", store=url), via=CLI) as svc:  # (its lease outlives it)
        svc.init_schema()
        svc.try_acquire("deploy", timeout="1h", command="./deploy.sh")
    if checkpointed:
        with sqlite3.connect(folder / "m.db") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for leftover in folder.glob("m.db-*"):
            leftover.unlink()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    code = (f"from mutexctl import Service, Settings, StoreUnavailableError\n"
            f"svc = Service(Settings(node_id='reader', store={url!r}))\n"
            "print([(s.mutex_id, s.state, s.taken_by) for s in svc.status('deploy')])\n"
            "print('schema', svc.check_schema().version)\n"
            "try:\n    svc.try_acquire('other')\n"
            "except StoreUnavailableError as e:\n    print('refused:', e.message)\n")
    done = _as_nobody(code, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[('deploy', 'held', 'writer')]"
    assert lines[1] == f"schema {SCHEMA_VERSION}"  # init-schema --check reads too
    assert lines[2].startswith("refused: store sqlite://") and "read-only for this user" in lines[2]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # nothing written


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists() or not shutil.which("setpriv"),
                    reason="needs root (to become nobody), setpriv and a system python3")
def test_a_read_only_store_of_an_older_release_is_read_without_its_later_tables(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    url = f"sqlite://{folder / 'm.db'}"
    with Service(Settings(node_id="writer", store=url), via=CLI) as svc:  # (its lease outlives it)
        svc.try_acquire("deploy", timeout="1h", command="./deploy.sh")
    with sqlite3.connect(folder / "m.db") as db:  # as a release before the history, the queue and slots
        for table in ("history", "waiters", "slots", "once_markers"):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in folder.glob("m.db-*"):
        leftover.unlink()
    code = (f"from mutexctl import Service, Settings\n"
            f"svc = Service(Settings(node_id='reader', store={url!r}))\n"
            "print([(s.mutex_id, s.state, s.taken_by, s.waiters) for s in svc.status('deploy')])\n"
            "print(svc.history(['deploy']))\n")
    done = _as_nobody(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[('deploy', 'held', 'writer', ())]", "[]"]


def test_a_full_disk_is_one_line_about_the_disk_and_loses_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mutexctl.stores.sqlite import files

    url = f"sqlite://{tmp_path / 'm.db'}"
    with Service(Settings(node_id="a", store=url)) as svc:
        first = svc.try_acquire("first", timeout="1h")
    real_prepare = files._prepare

    def tiny(db: sqlite3.Connection) -> None:
        real_prepare(db)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # this file may not grow: as a full disk

    monkeypatch.setattr(files, "_prepare", tiny)
    with Service(Settings(node_id="a", store=url)) as svc, pytest.raises(StoreUnavailableError) as caught:
        for i in range(200):
            svc.try_acquire(f"m{i}-" + "x" * 200, timeout="1h")
    assert "full" in caught.value.message and "cannot rollback" not in caught.value.message
    monkeypatch.undo()
    with Service(Settings(node_id="a", store=url)) as svc:
        assert [s.fence for s in svc.status("first")] == [first.fence]


def test_a_file_that_is_not_a_database_is_a_configuration_error_and_left_alone(cli: Cli, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("these are not the leases you are looking for\n" * 100)
    for command in (("status",), ("acquire", "job")):
        done = cli("--store", f"sqlite://{bogus}", *command)
        assert done.returncode == 78 and "is not a mutexctl SQLite database" in done.stderr
        assert bogus.read_text() == "these are not the leases you are looking for\n" * 100
    folder = cli("--store", f"sqlite://{tmp_path}", "status")
    assert folder.returncode == 78 and "is a directory" in folder.stderr


def test_library_errors_for_a_release_without_the_right_token_say_what_happened(service: Service,
                                                                                other: Service) -> None:
    service.try_acquire("m", timeout="1h")
    with pytest.raises(NotOwnerError, match="held by node-a"):
        other.release("m")

