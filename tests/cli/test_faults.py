"""Nothing outside the lease breaks it: files that are not ours, device nodes, escapes in foreign
documents, ordinary faults with their own exit status, signals to waiters, closed pipes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mutexctl import HeldOnHostError, NotOwnerError, Service, Settings
from mutexctl.exec.handler import handler_stop_grace_s, run_handler

from ..conftest import HELPERS, Cli, mutexctl_argv, pid_alive, wait_until

ESCAPES = "svc\x1b]0;PWNED\x07\x1b[2J\u009b31m"
RAW = ("\x1b", "\x07", "\u009b")


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and lines[0].startswith("mutexctl: ") and len(lines) <= 2, lines
    return lines[0]


# -- 1. a store file removed, moved or replaced under a running lease ----------------------------------

SECTION = HELPERS / "section.py"
LEASE = "9s"  # renewed every 3 s: the holder notices the file's fate at its next renewal


def _replace_with_a_fresh_store(db: Path, cli: Cli) -> None:
    other = db.with_name("other.db")
    with Service(Settings(node_id="probe", store=f"sqlite://{other}")) as fresh:
        assert fresh.status() == []  # a mutexctl store of its own, empty
    os.replace(other, db)


FILE_FATES = {
    "rm -rf the directory": lambda db, cli: shutil.rmtree(db.parent),
    "mv the directory": lambda db, cli: db.parent.rename(db.parent.with_name("moved")),
    "rm the database": lambda db, cli: db.unlink(),
    "rm the -wal": lambda db, cli: Path(f"{db}-wal").unlink(),
    "rm the -shm": lambda db, cli: Path(f"{db}-shm").unlink(),
    "rm db*": lambda db, cli: [Path(f"{db}{s}").unlink() for s in ("", "-wal", "-shm")],
    "mv the database": lambda db, cli: db.rename(db.with_name("old.db")),
    "replace the database": _replace_with_a_fresh_store,
}


def _sections(log: Path) -> list[tuple[str, str, int]]:
    return [(what, who, int(ns)) for what, who, ns in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fate", list(FILE_FATES))
def test_a_store_file_removed_or_replaced_under_a_lease_lets_nobody_in_beside_the_holder(
        cli: Cli, store_url: str, tmp_path: Path, fate: str) -> None:
    db = Path(store_url.removeprefix("sqlite://"))
    log = tmp_path / "sections.log"
    holder = cli.popen("acquire", "job", "--timeout", LEASE, "--", sys.executable, str(SECTION), str(log), "A",
                       "60000")
    wait_until(lambda: log.exists() and "enter A" in log.read_text(), timeout=30)
    FILE_FATES[fate](db, cli)
    other = {"MUTEXCTL_NODE_ID": "other"}
    refused = cli("acquire", "job", "--", sys.executable, str(SECTION), str(log), "B", "0", env=other)
    # The holder still runs: nobody else gets in (1: held; 69 with the -wal gone while its holder has the
    # -shm's index of it open: SQLite refuses to open the file at all until that holder lets go).
    assert refused.returncode in ((1, 69) if fate == "rm the -wal" else (1,)), (refused.returncode, refused.stderr)
    assert "enter B" not in log.read_text()
    # The holder notices at its next renewal, stops its command, and is gone (75) well within its lease.
    _, err = holder.communicate(timeout=60)
    holder_gone_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert holder.returncode == 75, err
    assert "removed or replaced" in err
    token = cli("acquire", "job", "--timeout", "2s", env=other)
    assert token.returncode == 0, token.stderr
    assert int(token.stdout) > 1  # the holder's fence was 1: the file at the path never goes back
    entered = [ns for what, who, ns in _sections(log) if (what, who) == ("enter", "B")]
    assert entered == []  # B never ran beside A (its one run was refused)
    assert [who for what, who, _ in _sections(log)] == ["A"]  # A was stopped inside: no exit line
    assert holder_gone_ns > _sections(log)[0][2]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_long_lived_service_follows_a_replaced_store_file_and_its_old_lease_is_lost(
        store_url: str, tmp_path: Path) -> None:
    db = Path(store_url.removeprefix("sqlite://"))
    with Service(Settings(node_id="svc", store=store_url)) as svc:
        lease = svc.acquire("job", timeout="30s")
        shutil.rmtree(db.parent)
        with Service(Settings(node_id="other", store=store_url)) as other, \
                pytest.raises(HeldOnHostError, match="held on this host by pid"):
            other.try_acquire("job", timeout="5s")  # this process still holds it, in the old file
        with pytest.raises(NotOwnerError, match="removed or replaced"):
            svc.renew(lease)
        again = svc.acquire("other-job", timeout="5s")  # the service now uses the file at the path
        assert [s.mutex_id for s in svc.status() if s.taken] == ["other-job"]
        svc.release("other-job", token=again.fence)
        with pytest.raises(NotOwnerError):
            svc.release("job", token=lease.fence)
        assert svc.acquire("job", timeout="5s").fence > lease.fence


# -- 2. metrics --textfile replaces only regular files ---------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_metrics_textfile_refuses_device_nodes_fifos_and_symlinks_and_leaves_them_as_they_are(
        cli: Cli, tmp_path: Path) -> None:
    targets = tmp_path / "d"
    targets.mkdir()
    real = targets / "real.prom"
    real.write_text("kept\n")
    os.symlink(real, targets / "link")
    os.mkfifo(targets / "fifo")
    kinds = {"link": "a symlink", "fifo": "a device or special file"}
    if os.geteuid() == 0:  # a character device like /dev/null (only root may make one)
        os.mknod(targets / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        kinds["null"] = "a device or special file"
    before = {name: os.lstat(targets / name) for name in kinds}
    for name, kind in kinds.items():
        line = one_line_error(cli("metrics", "--textfile", str(targets / name)), 78)
        assert name in line and kind in line, line
        after = os.lstat(targets / name)
        assert (after.st_mode, after.st_ino, after.st_rdev) == (before[name].st_mode, before[name].st_ino,
                                                              before[name].st_rdev)
    assert real.read_text() == "kept\n"
    assert sorted(p.name for p in targets.iterdir()) == sorted([*kinds, "real.prom"])  # no temporary left


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_metrics_textfile_on_a_full_file_system_exits_73_and_keeps_the_old_file(cli: Cli, tmp_path: Path) -> None:
    assert cli("acquire", "one").returncode == 0
    full = tmp_path / "full"
    full.mkdir()
    # A file system of its own, filled up, in a mount namespace of its own (nothing to unmount after).
    script = ('mount -t tmpfs -o size=16k tmpfs "$1" || exit 99; printf "# the previous reading\\n" > "$1/m.prom"; '
              'head -c 65536 /dev/zero > "$1/filler" 2>/dev/null; shift; "$@" metrics --textfile "$0/m.prom"; '
              'rc=$?; echo "--"; cat "$0/m.prom"; ls -A "$0"; exit $rc')
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed for a file system of the test's own"
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    done = subprocess.run([unshare, "--mount", *as_root, "sh", "-c", script, str(full), str(full), *mutexctl_argv()],
                          env=cli.env, cwd=cli.cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 99, f"could not mount a tmpfs for the test: {done.stderr}"
    line = one_line_error(done, 73)
    assert "cannot write the metrics file" in line and "m.prom" in line and "No space left" in line, line
    kept, listing = done.stdout.split("--\n", 1)[1].split("\n", 1)
    assert kept == "# the previous reading"
    assert sorted(listing.split()) == ["filler", "m.prom"]  # the temporary file went
    long_name = tmp_path / ("m" * 300)
    assert "File name too long" in one_line_error(cli("metrics", "--textfile", str(long_name)), 78)
    target = tmp_path / "ok.prom"
    assert cli("metrics", "--textfile", str(target)).returncode == 0
    assert "mutexctl_mutex_held" in target.read_text()


# -- 3. another program's SQLite file is left byte for byte ------------------------------------------


def _foreign_files(folder: Path) -> list[Path]:
    folder.mkdir()
    plain = folder / "app.db"
    with sqlite3.connect(plain) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users VALUES (1, 'ada')")
    lookalike = folder / "locks.db"  # its own "mutexes" table, not ours
    with sqlite3.connect(lookalike) as db:
        db.execute("CREATE TABLE mutexes (id TEXT PRIMARY KEY, owner TEXT)")
        db.execute("INSERT INTO mutexes VALUES ('deploy', 'me')")
    return [plain, lookalike]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", [["status"], ["acquire", "job"], ["acquire", "job", "--", "true"],
                                     ["init-schema"], ["init-schema", "--check"], ["history"],
                                     ["listen", "--once"], ["broadcast", "hello"], ["doctor"], ["metrics"]])
def test_another_program_s_sqlite_file_is_exit_78_and_left_byte_for_byte(cli: Cli, tmp_path: Path,
                                                                          command: list[str]) -> None:
    for path in _foreign_files(tmp_path / "apps"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        done = cli("--store", f"sqlite://{path}", *command)
        # (doctor reports it as its failed store check, on stdout)
        line = done.stdout if command == ["doctor"] else one_line_error(done, 78)
        assert done.returncode == 78 and "is not a mutexctl store" in line and "left untouched" in line, line
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in (tmp_path / "apps").iterdir()) == ["app.db", "locks.db"]  # no -wal, no -shm


# -- 4. terminal escapes from a foreign document never reach the terminal raw ------------------------


@pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)
def test_escapes_in_a_foreign_mongodb_document_are_shown_escaped_on_every_path(cli: Cli, store_url: str) -> None:
    import pymongo

    with pymongo.MongoClient(store_url) as client:
        client.get_default_database()["mutexes"].insert_one({
            "mutexId": "shared", "taken": True, "takenBy": ESCAPES, "timeout": 600_000,
            "takenAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")})
        client.get_default_database()["mutexes"].insert_one({
            "mutexId": "evil\x1b[2J\u009bname", "taken": False, "takenBy": "x", "timeout": 1000,
            "takenAt": "2026-01-01T00:00:00.000Z"})
    outputs = [cli("acquire", "shared"), cli("acquire", "shared", "--wait", "300ms"), cli("release", "shared"),
               cli("renew", "shared", "--token", "1"), cli("metrics")]
    for done in outputs:
        assert done.returncode != 0 or done.stdout, done
        assert not any(c in done.stdout + done.stderr for c in RAW), (done.args, done.stdout, done.stderr)
    assert "svc\\x1b]0;PWNED\\x07" in outputs[0].stderr
    assert "waiting: " in outputs[1].stderr and "\\x1b" in outputs[1].stderr
    assert r'mutex="evil\\x1b[2J\\x9bname"' in outputs[4].stdout  # (Prometheus doubles the backslash)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_listen_json_escapes_c1_controls_and_keeps_other_text_readable(cli: Cli) -> None:
    node = {"MUTEXCTL_NODE_ID": "reader"}
    assert cli("init-schema").returncode == 0
    assert cli("listen", "--once", env=node).returncode == 0  # registers: later messages are for it
    assert cli("broadcast", "note", "--payload", json.dumps({"text": "héllo \u009b31m \u2028"})).returncode == 0
    done = cli("listen", "--once", "--json", env=node)
    assert done.returncode == 0, done.stderr
    assert "\u009b" not in done.stdout and "\u2028" not in done.stdout and "héllo" in done.stdout
    (message,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert message["payload"] == {"text": "héllo \u009b31m \u2028"}  # the value itself is intact


# -- 5. ordinary conditions are not "internal errors" -------------------------------------------------


def _without_root_s_reach() -> list[str]:
    """A prefix that makes permission checks bite: root without the capabilities that skip them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's file-access capabilities"
    drop = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_home_behind_a_0700_directory_is_no_internal_error(cli: Cli, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    (locked / "home" / ".config" / "mutexctl").mkdir(parents=True)
    locked.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(locked, 65534, 65534)  # someone else's, so that the 0700 keeps root out too
    else:
        locked.chmod(0)
    assert cli("acquire", "made", "--", "true").returncode == 0  # the store exists: status reads it
    try:
        env = {**cli.env, "HOME": str(locked / "home"), "XDG_CONFIG_HOME": str(locked / "home" / ".config")}
        done = subprocess.run([*_without_root_s_reach(), *mutexctl_argv(), "status"], env=env, cwd=cli.cwd,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr  # no parameter file is to be had there: defaults apply
        named = subprocess.run([*_without_root_s_reach(), *mutexctl_argv(), "--config",
                                str(locked / "home" / ".config" / "mutexctl" / "config.yaml"), "status"],
                               env=env, cwd=cli.cwd, capture_output=True, text=True, timeout=60)
        assert "cannot be reached" in one_line_error(named, 78)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_damaged_store_file_is_exit_78_for_every_command(cli: Cli, store_url: str) -> None:
    assert cli("init-schema").returncode == 0
    for i in range(40):
        assert cli("broadcast", f"hello-{i}").returncode == 0
    path = Path(store_url.removeprefix("sqlite://"))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with open(path, "r+b") as damaged:  # 8 KiB of noise in the middle, past the first page
        damaged.seek(max(4096, size // 2 - 4096))
        damaged.write(os.urandom(8192))
    for command in (["listen", "--once"], ["listen", "--once", "--from-start"]):
        line = one_line_error(cli(*command, timeout=60), 78)
        assert "is damaged" in line, line


# -- 6. input errors open nothing ------------------------------------------------------------------------

INPUT_ERRORS = [
    ["acquire", "x", "--limit", "0"], ["acquire", "x", "--shared", "--limit", "2"], ["acquire", "x", "--limit", "-1"],
    ["acquire", "x", "--once", "", "--", "true"], ["acquire", "x", "--once", "a\nb", "--", "true"],
    ["acquire", "x", "--once", "k"], ["acquire", "x", "--timeout", "0"], ["acquire", "x", "--wait", "soon"],
    ["acquire", "$x"], ["history", "--since", "xx"], ["history", "--limit", "0"], ["renew", "x", "--token", "0"],
    ["renew", "x"], ["nodes", "--channel", ""], ["release", "x", "--force", "--fence", "0", "--reason", "r"],
    ["release", "x", "--force"], ["release", "x", "--token", "-1"], ["broadcast", "a", "--payload", "{"],
    ["broadcast", "a", "--payload", "[1, NaN]"], ["broadcast", ""], ["broadcast", "a", "--to", ""],
    ["listen", "--handler-timeout", "soon", "--", "true"], ["status", "--interval", "0", "--watch"],
    ["metrics", "--textfile", ""], ["acquire", "x", "-E", "300"], ["init-schema", "--wait", "x"],
]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_input_errors_create_no_store_file_or_directory(cli: Cli, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    for argv in INPUT_ERRORS:
        done = cli("--store", f"sqlite://{fresh / 's.db'}", *argv)
        assert done.returncode in {2, 78}, (argv, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr
        assert not fresh.exists(), (argv, sorted(p.name for p in fresh.iterdir()))


# -- 7. SIGTERM and SIGHUP end a wait as Ctrl-C does ---------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_to_a_waiting_acquire_leaves_the_queue_and_exits_128_plus_n(
        cli: Cli, service: Service, signum: int) -> None:
    held = service.acquire("job", timeout="60s")
    for as_json in (False, True):
        waiter = cli.popen(*(["--json"] if as_json else []), "acquire", "job", "--wait", "60s",
                           env={"MUTEXCTL_NODE_ID": "waiter"})
        wait_until(lambda: any(s.waiters for s in service.status("job")), timeout=30)
        waiter.send_signal(signum)
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 128 + signum, err
        if as_json:
            assert json.loads(out)["error"]["exit_code"] == 128 + signum
        else:
            assert err.strip().splitlines()[-1] == f"mutexctl: stopped by {signal.Signals(signum).name}" + (
                " (the terminal went away)" if signum == signal.SIGHUP else "")
        assert [s.waiters for s in service.status("job")] == [()]  # its queue entry left with it
    service.release("job", token=held.fence)


# -- 8. a closed pipe ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_closed_pipe_ends_status_watch_with_the_sigpipe_status_quietly(cli: Cli) -> None:
    assert cli("acquire", "made", "--", "true").returncode == 0  # the store exists: status reads it
    for flags in ([], ["--json"]):
        reader = subprocess.Popen([*mutexctl_argv(), *flags, "status", "--watch", "--interval", "100ms"],
                                  env=cli.env, cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert reader.stdout is not None and reader.stdout.readline()
        reader.stdout.close()  # `| head -1`
        assert reader.wait(timeout=30) == 141
        assert reader.stderr is not None and reader.stderr.read() == b""


# -- 9. --json in exec mode: every error document on stderr ---------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_json_errors_in_exec_mode_go_to_stderr_whether_the_parser_or_a_check_finds_them(cli: Cli) -> None:
    for argv in (["acquire", "x", "--limit", "x", "--", "true"], ["acquire", "x", "--limit", "0", "--", "true"],
                 ["acquire", "x", "--bogus", "--", "true"]):
        done = cli("--json", *argv)
        assert done.returncode == 2 and done.stdout == "", (argv, done.stdout)
        assert json.loads(done.stderr)["error"]["kind"] == "usage"
    token_mode = cli("--json", "acquire", "x", "--limit", "x")
    assert token_mode.returncode == 2 and json.loads(token_mode.stdout)["error"]["exit_code"] == 2


# -- 10. a handler's grace is applied once -----------------------------------------------------------------


def test_a_handler_that_ignores_sigterm_is_killed_one_grace_after_its_limit(tmp_path: Path) -> None:
    limit = 6.0
    grace = handler_stop_grace_s(limit)  # 1 s
    mark, pid_file = tmp_path / "term", tmp_path / "pid"
    script = (f"echo $$ > {pid_file}; trap 'date +%s.%N > {mark}' TERM; "
              "while :; do sleep 0.05; done")
    started = time.time()
    run = run_handler(["sh", "-c", script], b"", dict(os.environ), limit_s=limit)
    ended = time.time()
    assert run.timed_out and run.status == 124
    term_at = float(mark.read_text())
    assert term_at - started >= limit - 0.05
    assert not pid_alive(int(pid_file.read_text()))
    # KILL one grace after TERM (and the listener free again then), not two.
    assert 0.9 * grace <= ended - term_at < 1.6 * grace, (ended - term_at, grace)
