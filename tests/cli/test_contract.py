"""The CLI contract: stdout is data, exit statuses as documented, --json everywhere."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mutexctl import Service

from ..conftest import BUSY_S, Cli, mutexctl_argv, wait_until


def test_acquire_prints_only_the_fence_on_stdout(cli: Cli) -> None:
    done = cli("acquire", "nightly")
    assert (done.returncode, done.stdout) == (0, "1\n")


def test_the_fence_released_by_token_lets_the_next_acquire_in_with_a_higher_fence(cli: Cli) -> None:
    token = cli("acquire", "nightly").stdout.strip()
    assert cli("release", "nightly", "--token", token).returncode == 0
    assert cli("acquire", "nightly").stdout.strip() == str(int(token) + 1)


def test_a_busy_mutex_exits_1_and_names_the_holder_on_stderr(cli: Cli, service: Service) -> None:
    service.try_acquire("nightly", timeout="1h")
    done = cli("acquire", "nightly")
    assert done.returncode == 1 and done.stdout == ""
    assert "held by node-a" in done.stderr


def test_conflict_exit_code_changes_the_busy_status(cli: Cli, service: Service) -> None:
    service.try_acquire("nightly", timeout="1h")
    assert cli("acquire", "nightly", "-E", "42").returncode == 42
    assert cli("acquire", "nightly", "--conflict-exit-code", "0").returncode == 0


def test_wait_blocks_until_the_holder_releases(cli: Cli, service: Service) -> None:
    lease = service.try_acquire("nightly", timeout="1h")
    threading.Timer(0.5, service.release, args=("nightly",), kwargs={"token": lease.fence}).start()
    started = time.monotonic()
    done = cli("acquire", "nightly", "--wait", "20s")
    assert done.returncode == 0 and done.stdout.strip() == str(lease.fence + 1)
    assert 0.5 <= time.monotonic() - started < 15


def test_a_wait_that_times_out_exits_1_and_says_so(cli: Cli, service: Service) -> None:
    service.try_acquire("nightly", timeout="1h")
    started = time.monotonic()
    done = cli("acquire", "nightly", "--wait", "700ms")
    assert done.returncode == 1 and "gave up after 0.7s" in done.stderr
    assert time.monotonic() - started >= 0.7


def test_a_wait_does_not_outlast_an_expiring_holder(cli: Cli, service: Service) -> None:
    service.try_acquire("nightly", timeout="600ms")
    done = cli("acquire", "nightly", "--wait", "inf")
    assert done.returncode == 0 and done.stdout.strip() == "2"


def test_release_by_a_non_owner_exits_3(cli: Cli, service: Service) -> None:
    lease = service.try_acquire("nightly", timeout="1h")
    done = cli("release", "nightly")
    assert done.returncode == 3 and "held by node-a" in done.stderr
    assert cli("release", "nightly", "--token", str(lease.fence), "--node-id", "node-a").returncode == 0


def test_release_of_an_expired_lease_exits_3(cli: Cli, service: Service) -> None:
    token = cli("acquire", "nightly", "--timeout", "100ms").stdout.strip()
    wait_until(lambda: service.status("nightly")[0].state == "expired", timeout=5)
    done = cli("release", "nightly", "--token", token)
    assert done.returncode == 3 and "expired" in done.stderr


def test_force_release_is_recorded_and_status_shows_it(cli: Cli, service: Service) -> None:
    service.try_acquire("stuck", timeout="1h")
    done = cli("release", "stuck", "--force", "--reason", "VM deleted, INC-42")
    assert done.returncode == 0 and "force-released 'stuck' from node-a" in done.stderr
    status = cli("status", "stuck")
    assert "VM deleted, INC-42" in status.stdout and "free" in status.stdout
    document = json.loads(cli("status", "--json").stdout)
    [record] = document["forced_releases"]
    assert record["previous_holder"] == "node-a" and record["by_node"] == "cli-node"


def test_status_shows_holder_time_left_and_why(cli: Cli) -> None:
    cli("acquire", "deploy", "--timeout", "10m")
    done = cli("status")
    assert done.returncode == 0
    header, row = done.stdout.splitlines()[:2]
    assert header.split()[:3] == ["MUTEX", "STATE", "NODE"]
    assert row.split()[:3] == ["deploy", "held", "cli-node"] and "10m00s" in row
    assert "has exited on this host and nobody renews" in done.stdout  # acquire exited: who renews it?


def test_status_json_documents_every_field(cli: Cli) -> None:
    cli("acquire", "deploy", "--timeout", "10m")
    [state] = json.loads(cli("status", "--json").stdout)["mutexes"]
    assert {"mutex", "state", "taken_by", "host", "pid", "command", "taken_at", "expires_at", "remaining_ms",
            "timeout_ms", "fence", "why"} <= set(state)
    assert state["state"] == "held" and 590_000 < state["remaining_ms"] <= 600_000
    assert state["taken_at"].endswith("Z") and state["timeout_ms"] == 600_000


def test_credentials_in_the_command_line_are_not_stored_for_status(cli: Cli, service: Service) -> None:
    job = cli.popen("acquire", "job", "--timeout", "1h", "--", "sh", "-c", "sleep 60", "mongodb://admin:s3cret@db1/ops")
    try:
        wait_until(lambda: service.status("job") and service.status("job")[0].state == "held", timeout=20)
        done = cli("status", "--json")
        assert "s3cret" not in done.stdout and "mongodb://***@db1/ops" in done.stdout
        assert [s.holder.command for s in service.status("job") if s.holder] == \
               ["sh -c 'sleep 60' mongodb://***@db1/ops"]
    finally:
        job.terminate()
        job.communicate(timeout=20)


def test_acquire_json(cli: Cli) -> None:
    document = json.loads(cli("acquire", "deploy", "--json").stdout)
    assert document["ok"] is True and document["fence"] == 1 and document["node"] == "cli-node"


def test_exec_mode_json_goes_to_stderr_and_stdout_is_the_command_s(cli: Cli) -> None:
    done = cli("--json", "acquire", "deploy", "--", "sh", "-c", "echo hello; exit 4")
    assert done.returncode == 4 and done.stdout == "hello\n"  # as with flock: the command's output alone
    [line] = done.stderr.splitlines()
    record = json.loads(line)
    assert {key: record.pop(key) for key in ("waited_ms", "held_ms")}.keys() == {"waited_ms", "held_ms"}
    assert record == {"ok": True, "mutex": "deploy", "fence": 1, "status": 4, "done": None}
    refused = cli("--json", "acquire", "deploy", "--timeout", "1ms", "--", "true")
    assert refused.stdout == "" and json.loads(refused.stderr)["error"]["exit_code"] == 2


def test_version_is_json_with_json_and_nothing_after_the_separator_is_an_error(cli: Cli) -> None:
    import mutexctl

    assert json.loads(cli("--json", "--version").stdout) == {"ok": True, "version": mutexctl.__version__}
    done = cli("acquire", "job", "--")
    assert done.returncode == 2 and "nothing after '--'" in done.stderr
    shown = cli("status", "--json")  # no token-mode lease was taken: on SQLite, not even the store was made
    if cli.store_url.startswith("sqlite"):
        assert shown.returncode == 78 and "does not exist" in shown.stdout, shown.stdout
    else:
        assert json.loads(shown.stdout)["mutexes"] == []


def test_ctrl_c_under_json_still_gives_the_error_document(cli: Cli, service: Service) -> None:
    service.try_acquire("busy", timeout="1h")
    proc = cli.popen("--json", "acquire", "busy", "--wait", "1m")
    wait_until(lambda: proc.poll() is not None or bool(service.status("busy")[0].waiters), timeout=BUSY_S * 10)
    assert proc.poll() is None  # it is waiting in line now
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert json.loads(out)["error"] == {"kind": "interrupted", "message": "interrupted (Ctrl-C)", "exit_code": 130}


def test_global_options_work_before_and_after_the_command(cli: Cli) -> None:
    assert json.loads(cli("--node-id", "n1", "acquire", "a", "--json").stdout)["node"] == "n1"
    assert json.loads(cli("acquire", "b", "--node-id", "n2", "--json").stdout)["node"] == "n2"


def test_version_and_help(cli: Cli) -> None:
    import mutexctl

    assert cli("--version").stdout.strip() == f"mutexctl {mutexctl.__version__}"
    help_text = cli("--help").stdout
    assert all(word in help_text for word in ("acquire", "release", "status"))
    assert "--conflict-exit-code" in cli("acquire", "--help").stdout


@pytest.mark.parametrize("args", [[], ["broadcast"], ["config"]])
def test_a_group_alone_prints_its_help_and_nothing_else(cli: Cli, args: list[str]) -> None:
    done = cli(*args)
    assert done.returncode == 2 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"Usage: mutexctl {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND"), done.stdout
    assert "\\n" not in done.stdout and "hint:" not in done.stdout and "Commands:" in done.stdout


@pytest.mark.parametrize(("typed", "meant"), [("aquire", "acquire"), ("relase", "release"), ("stauts", "status"),
                                              ("broadcst", "broadcast")])
def test_a_misspelt_command_gets_a_did_you_mean(cli: Cli, typed: str, meant: str) -> None:
    done = cli(typed, "x")
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"mutexctl: no command '{typed}'", f"hint: did you mean 'mutexctl {meant}'? see 'mutexctl --help' for the "
        "commands"], done.stderr


def test_arguments_are_named_alike_and_errors_point_at_the_command_s_help(cli: Cli) -> None:
    usage = {args[-1]: cli(*args, "--help").stdout.splitlines()[0]
             for args in (["acquire"], ["renew"], ["release"], ["broadcast", "send"], ["broadcast", "status"])}
    assert usage == {"acquire": "Usage: mutexctl acquire [OPTIONS] NAME [-- COMMAND [ARGS]...]",
                     "renew": "Usage: mutexctl renew [OPTIONS] NAME",
                     "release": "Usage: mutexctl release [OPTIONS] NAME",
                     "send": "Usage: mutexctl broadcast send [OPTIONS] ACTION",
                     "status": "Usage: mutexctl broadcast status [OPTIONS] ID"}
    for args, where in ((["acquire", "x", "--once"], "mutexctl acquire"), (["acquire"], "mutexctl acquire"),
                        (["--json", "history", "--since"], "mutexctl history"),
                        (["broadcast", "status", "--channel"], "mutexctl broadcast status")):
        done = cli(*args)
        said = done.stdout + done.stderr
        assert done.returncode == 2 and f"see '{where} --help'" in said, (args, said)
        assert "{" not in said.replace('{"', "").replace("{'", ""), said


def _complete(cli: Cli, shell: str, words: str, env: dict[str, str] | None = None) -> list[str]:
    """What the shell's completion script gets for ``words`` (the last one being completed)."""
    ask = {"bash": {"_MUTEXCTL_COMPLETE": "complete_bash", "COMP_WORDS": words,
                    "COMP_CWORD": str(len(words.split(" ")) - 1)},
           "zsh": {"_MUTEXCTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": words},
           "fish": {"_MUTEXCTL_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": words,
                    "_TYPER_COMPLETE_FISH_ACTION": "get-args"}}[shell]
    done = subprocess.run(mutexctl_argv(), env={**cli.env, **ask, **(env or {})}, cwd=cli.cwd, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return [word.strip('"') for word in re.findall(r"deploy-[a-z]+|other-[a-z]+", done.stdout)]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_mutex_names_complete_from_the_store(cli: Cli, service: Service, shell: str) -> None:
    for name in ("deploy-web", "deploy-db", "other-job"):
        with service.lock(name, timeout="10s"):
            pass
    assert _complete(cli, shell, "mutexctl release deploy-") == ["deploy-db", "deploy-web"]
    assert _complete(cli, shell, "mutexctl status other-") == ["other-job"]
    assert sorted(_complete(cli, shell, "mutexctl history ")) == ["deploy-db", "deploy-web", "other-job"]


def test_completion_is_bounded_in_time_and_quiet_when_the_store_does_not_answer(cli: Cli) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # accepts, never answers: the look for the server would take connect_timeout (60s)
    try:
        started = time.monotonic()
        found = _complete(cli, "bash", "mutexctl release deploy-", env={
            "MUTEXCTL_STORE": f"mongodb://127.0.0.1:{server.getsockname()[1]}/x", "MUTEXCTL_CONNECT_TIMEOUT": "60s"})
        took = time.monotonic() - started
    finally:
        server.close()
    assert found == [] and took < 30, took  # the one-second budget, not the minute


def test_the_default_store_is_an_sqlite_file_under_xdg_state_home(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "MUTEXCTL_STORE"}
    done = subprocess.run([*cli_argv(), "acquire", "demo"], env=env, cwd=cli.cwd, capture_output=True, text=True)
    assert done.returncode == 0
    assert (Path(env["XDG_STATE_HOME"]) / "mutexctl" / "mutexctl.db").is_file()


def test_python_dash_m_mutexctl_works() -> None:
    done = subprocess.run([sys.executable, "-m", "mutexctl", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("mutexctl ")


def test_importing_the_library_pulls_in_no_cli_or_driver_modules() -> None:
    code = ("import sys, mutexctl; "
            "print(sorted(m for m in ('typer', 'rich', 'pymongo', 'click', 'yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]"


def test_sqlite_runs_never_import_pymongo(tmp_path: Path) -> None:
    code = ("import sys; from mutexctl.cli.app import run; "
            f"run(['--store', 'sqlite://{tmp_path}/x.db', 'acquire', 'x', '--', 'true']); "
            "print('pymongo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def cli_argv() -> list[str]:
    from ..conftest import mutexctl_argv

    return mutexctl_argv()


def test_a_free_mutex_shows_its_last_holder_as_such_never_as_current(cli: Cli) -> None:
    assert cli("release", "job", "--token", cli("acquire", "job").stdout.strip()).returncode == 0
    [state] = json.loads(cli("status", "--json").stdout)["mutexes"]
    assert (state["state"], state["taken"], state["taken_by"], state["last_taken_by"]) == ("free", False, None,
                                                                                         "cli-node")
    assert state["host"] is None and state["pid"] is None and state["command"] is None
    assert state["remaining_ms"] is None and state["expires_at"] is None
    text = cli("status").stdout
    assert text.splitlines()[1].split()[:3] == ["job", "free", "-"]


def test_verbose_shows_the_library_s_log_lines_masked_and_quiet_runs_show_none(cli: Cli) -> None:
    quiet = cli("acquire", "job", "--timeout", "1h")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = cli("-vv", "release", "job", "--force", "--reason", "see mongodb://admin:s3cret@db/x")
    assert loud.returncode == 0, loud.stderr
    assert "mutexctl: INFO mutexctl.leases: force-released job" in loud.stderr
    assert "s3cret" not in loud.stderr and "mongodb://***@db/x" in loud.stderr
    debug = cli("-vv", "acquire", "job2")
    assert "DEBUG mutexctl.stores." in debug.stderr and "acquired job2 as cli-node" in debug.stderr
    assert "DEBUG" not in cli("-v", "acquire", "job3").stderr


def test_the_library_prints_nothing_of_its_own(tmp_path: Path) -> None:
    code = (f"import mutexctl; svc = mutexctl.connect(store='sqlite:///{tmp_path}/x.db', node_id='n');"
            "lock = svc.lock('m', timeout='300ms'); held = lock.__enter__();"
            "svc.force_release('m', reason='test'); held.wait_lost(5)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """What ``argv`` prints on a terminal (a pty) 100 columns wide."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the pty
        os.execve(argv[0], argv, {"COLUMNS": "100", "TERM": "xterm", **env})
    out = b""
    while select.select([fd], [], [], 20)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_help_on_a_terminal_keeps_the_env_hints_and_plain_flags(cli: Cli) -> None:
    text = _on_a_terminal([*mutexctl_argv(), "--help"], cli.env)
    assert "[env: MUTEXCTL_CONFIG]" in text and "[env: MUTEXCTL_STORE]" in text
    assert "-v, --verbose" in text and "<int>" not in text and "INTEGER" not in text


def test_status_on_an_80_column_terminal_keeps_each_mutex_on_one_line(cli: Cli, service: Service) -> None:
    import re

    service.try_acquire("a-rather-long-mutex-name-for-the-nightly-export", timeout="1h",
                        command="./export.sh --all --to s3://bucket/with/a/long/path --verbose --retries 5")
    service.try_acquire("short", timeout="5m", command="\x1b[2Jclear-the-screen")
    service.force_release("short", reason="INC-9 \x1b]0;owned\x07 title change")
    env = {**cli.env, "COLUMNS": "80"}
    text = _on_a_terminal([*mutexctl_argv(), "status"], env).replace("\r\n", "\n")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # our colours; everything else must be escaped
    table = [line for line in plain.splitlines() if line and not line.startswith("#")]
    assert len(table) == 3 and table[0].startswith("MUTEX")  # the header, two mutexes
    assert all(len(line) <= 80 for line in table), table
    assert "…" in plain and "\x1b]" not in text and "\\x1b]0;owned\\x07" in plain
    piped = cli("status").stdout
    assert "s3://bucket/with/a/long/path" in piped  # piped: every value whole, for scripts


def test_status_takes_globs_and_held_gives_scripts_an_exit_status(cli: Cli, service: Service) -> None:
    for name in ("deploy-eu", "deploy-us", "nightly"):
        service.try_acquire(name, timeout="1h")
    service.release("deploy-us", token=service.status("deploy-us")[0].fence)
    names = [s["mutex"] for s in json.loads(cli("status", "deploy-*", "--json").stdout)["mutexes"]]
    assert names == ["deploy-eu", "deploy-us"]
    assert [s["mutex"] for s in json.loads(cli("status", "deploy-*", "--held", "--json").stdout)["mutexes"]] == \
           ["deploy-eu"]
    assert cli("status", "deploy-eu", "--held").returncode == 0
    free = cli("status", "deploy-us", "--held")
    assert free.returncode == 1 and free.stderr.strip() == "mutexctl: no mutex matching deploy-us is held"
    document = json.loads(cli("status", "deploy-us", "--held", "--json").stdout)
    assert document["ok"] is False and document["error"]["exit_code"] == 1 and document["mutexes"] == []
    text = cli("status", "nightly", "deploy-eu").stdout
    assert "nightly" in text and "deploy-eu" in text and "deploy-us" not in text
    assert f"# store: {cli.store_url.split('?')[0]}" in text.replace("?directConnection=true", "")


def test_config_show_tells_each_setting_s_source_with_credentials_masked(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("node_id: from-file\ndefaults: {timeout: 1m30s}\n")
    done = cli("--config", str(path), "config", "show", "--json",
               env={"MUTEXCTL_STORE": "mongodb://admin:s3cret@db1/ops", "MUTEXCTL_WAIT": "5m", "MUTEXCTL_NODE_ID": ""})
    document = json.loads(done.stdout)
    assert document["settings"]["store"] == "mongodb://***@db1/ops" and "s3cret" not in done.stdout
    assert document["sources"] == {**document["sources"], "node_id": f"{path} (key node_id)",
                                   "timeout_ms": f"{path} (key defaults.timeout)", "wait_s": "MUTEXCTL_WAIT",
                                   "store": "MUTEXCTL_STORE", "collection": "default"}
    assert document["settings"]["timeout_ms"] == 90_000 and document["settings"]["wait_s"] == 300
    text = cli("--config", str(path), "--node-id", "from-flag", "config", "show").stdout
    assert "from-flag  [--node-id]" in text
