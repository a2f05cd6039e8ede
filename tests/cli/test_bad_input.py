"""Bad input through the CLI — malformed, huge, out of range, hostile, or merely human: one line (and a
hint), the documented exit code, no traceback, in well under a second of work, and an unchanged store;
durations read as mutexctl prints them; hints that fit the situation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mutexctl import Service
from mutexctl.inputs import parse_duration

from ..conftest import Cli, store_rows, wait_until

NAMES = {
    "empty": "",
    "too long": "x" * 256,
    "control character": "a\x01b",
    "newline": "a\nb",
    "leading dollar": "$where",
}

USAGE = [
    *[("name " + label, ["acquire", name]) for label, name in NAMES.items()],
    *[("release name " + label, ["release", name]) for label, name in NAMES.items()],
    ("negative timeout", ["acquire", "job", "--timeout", "-5s"]),
    ("zero timeout", ["acquire", "job", "--timeout", "0"]),
    ("garbage timeout", ["acquire", "job", "--timeout", "soon"]),
    ("unknown unit", ["acquire", "job", "--timeout", "5y"]),
    ("overflowing timeout", ["acquire", "job", "--timeout", "99999999999999999999h"]),
    ("exponent timeout", ["acquire", "job", "--timeout", "1e999"]),
    ("negative wait", ["acquire", "job", "--wait", "-1"]),
    ("garbage wait", ["acquire", "job", "--wait", "later"]),
    ("wait and nonblock", ["acquire", "job", "--wait", "1s", "--nonblock"]),
    ("conflict code out of range", ["acquire", "job", "-E", "300"]),
    ("conflict code not a number", ["acquire", "job", "-E", "x"]),
    ("unknown flag", ["acquire", "job", "--bogus"]),
    ("missing name", ["acquire"]),
    ("unknown command", ["grab", "job"]),
    ("force without reason", ["release", "held", "--force"]),
    ("force with blank reason", ["release", "held", "--force", "--reason", " "]),
    ("reason without force", ["release", "held", "--reason", "x"]),
    ("token and force", ["release", "held", "--force", "--reason", "x", "--token", "1"]),
    ("token not a number", ["release", "held", "--token", "one"]),
    ("interval without watch", ["status", "--interval", "5s"]),
    ("a duration after status -w", ["status", "-w", "5s"]),
    ("bad node id flag", ["--node-id", "", "acquire", "job"]),
]

YAML = {
    "malformed": "node_id: [unclosed\n",
    "not a mapping": "- a\n- b\n",
    "scalar document": "just words\n",
    "wrong type for node_id": "node_id: [1, 2]\n",
    "wrong type for store": "store: 5\n",
    "bad duration": "defaults: {timeout: soon}\n",
    "zero timeout": "defaults: {timeout: 0}\n",
    "bool duration": "defaults: {wait: yes}\n",
    "defaults not a mapping": "defaults: 30s\n",
    "unknown key": "colour: red\n",
    "unknown nested key": "defaults: {timeout: 30s, retries: 3}\n",
    "bad mutex name": "mutexes: {'$x': {timeout: 1s}}\n",
    "mutexes not a mapping": "mutexes: [a]\n",
    "not utf-8": b"node_id: \xff\xfe\n",
}


@pytest.mark.parametrize(("args", "line", "hint"), [
    (["release", "x", "--token", "abc"], "--token 'abc' is not a whole number", "--token takes the fence that acquire"),
    (["renew", "x", "--token", "1.5"], "--token '1.5' is not a whole number", "--token takes the fence that acquire"),
    (["acquire", "x", "--limit", "three"], "--limit 'three' is not a whole number", "--limit takes a whole number"),
    (["release", "x", "--force", "--reason", "r", "--fence", "f"], "--fence 'f' is not a whole number",
     "--fence takes the holder's fence"),
    (["status", "--interval", "5s"], "--interval applies to --watch only", "add --watch"),
    (["status", "-w", "5s"], "'5s' after -w reads as a duration, not a mutex name",
     "mutexctl status --watch --interval 5s"),
])
def test_flags_answer_in_mutexctl_s_own_words(cli: Cli, args: list[str], line: str, hint: str) -> None:
    done = cli(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[0] == f"mutexctl: {line}", done.stderr
    assert lines[1].startswith("hint: ") and hint in lines[1], done.stderr


def test_old_short_flags_still_work_with_a_deprecation_line(cli: Cli) -> None:
    assert cli("acquire", "a", "--", "true").returncode == 0
    limited = cli("history", "-n", "1")  # -n was --limit here; it is --nonblock on acquire
    assert limited.returncode == 0 and len([line for line in limited.stdout.splitlines()
                                            if not line.startswith("#")]) == 2, limited.stdout
    assert limited.stderr == "mutexctl: warning: 'history -n' is deprecated: use --limit " \
                             "(-n is --nonblock on acquire)\n"
    watched = cli.popen("status", "-w", "a")  # -w was --watch here; it is --wait on every other command
    try:
        first = watched.stdout.readline() if watched.stdout else ""
        assert first.startswith("# at "), first  # watching: a snapshot per interval
    finally:
        watched.terminate()
        _, err = watched.communicate(timeout=30)
    assert "'status -w' is deprecated: use --watch" in err, err
    for text in (cli("status", "--help").stdout, cli("history", "--help").stdout):
        assert "-w" not in text.replace("--", "  ") and " -n " not in text  # the old spellings are not offered


@pytest.fixture
def seeded(service: Service) -> Service:
    """A store that already holds something, so 'unchanged' means something."""
    service.try_acquire("held", timeout="1h")
    service.release("free", token=service.try_acquire("free", timeout="1h").fence)
    return service


def assert_one_line_error(done: object, code: int) -> str:
    stderr = done.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert done.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert 1 <= len(lines) <= 2 and lines[0].startswith("mutexctl: "), stderr
    assert len(lines) == 1 or lines[1].startswith("hint: ")
    assert done.stdout == ""  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.parametrize(("label", "args"), USAGE, ids=[label for label, _ in USAGE])
def test_usage_errors_give_one_line_exit_2_and_change_nothing(cli: Cli, seeded: Service, store_url: str,
                                                              label: str, args: list[str]) -> None:
    before = store_rows(store_url)
    assert_one_line_error(cli(*args), 2)
    assert store_rows(store_url) == before


@pytest.mark.parametrize("label", list(YAML), ids=list(YAML))
def test_bad_parameter_files_name_the_file_and_exit_78(cli: Cli, seeded: Service, store_url: str,
                                                       tmp_path: Path, label: str) -> None:
    config = tmp_path / "bad.yaml"
    text = YAML[label]
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = store_rows(store_url)
    line = assert_one_line_error(cli("--config", str(config), "acquire", "job"), 78)
    assert str(config) in line
    assert store_rows(store_url) == before


@pytest.mark.parametrize(("label", "env"), [
    ("missing config file", {"MUTEXCTL_CONFIG": "/nonexistent/mutexctl.yaml"}),
    ("bad timeout variable", {"MUTEXCTL_TIMEOUT": "soon"}),
    ("bad wait variable", {"MUTEXCTL_WAIT": "-1"}),
    ("unknown store scheme", {"MUTEXCTL_STORE": "redis://localhost/0"}),
    ("store URL without path", {"MUTEXCTL_STORE": "sqlite://"}),
])
def test_bad_environment_exits_78(cli: Cli, seeded: Service, store_url: str, label: str,
                                  env: dict[str, str]) -> None:
    before = store_rows(store_url)
    assert_one_line_error(cli("acquire", "job", env=env), 78)
    assert store_rows(store_url) == before


def test_an_unwritable_store_path_exits_69(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = assert_one_line_error(cli("--store", f"sqlite://{blocker}/sub/x.db", "acquire", "job"), 69)
    assert "cannot open store" in line


def test_errors_are_json_documents_with_json(cli: Cli) -> None:
    done = cli("acquire", "", "--json")
    assert done.returncode == 2 and done.stderr == ""
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["error"]["exit_code"] == 2 and document["error"]["kind"] == "usage"
    done = cli("--json", "acquire", "job", "--bogus")
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["kind"] == "usage"


# -- huge, out-of-range and hostile input -------------------------------------------------------------------

HUGE = "x" * 100_000


def one_line(done: object, code: int) -> str:
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert done.returncode == code, stderr  # type: ignore[attr-defined]
    assert stderr.startswith("mutexctl: ") and len(stderr.strip().splitlines()) <= 2, stderr[:500]
    assert len(stderr) < 600, "the error echoes the whole input"
    return stderr


@pytest.mark.parametrize(("label", "args", "env", "code"), [
    ("100k timeout", ["acquire", "job", "--timeout", HUGE], {}, 2),
    ("100k wait", ["acquire", "job", "--wait", HUGE], {}, 2),
    ("100k --to names", ["broadcast", "send", "go", *[a for i in range(20_000) for a in ("--to", f"n{i}")]], {}, 2),
    ("100k message id", ["broadcast", "status", HUGE], {}, 2),
    ("100k node id env", ["acquire", "job"], {"MUTEXCTL_NODE_ID": HUGE}, 78),
    ("100k node id flag", ["--node-id", HUGE, "acquire", "job"], {}, 2),
    ("100k reason", ["release", "job", "--force", "--reason", HUGE], {}, 2),
    ("100k name", ["acquire", HUGE], {}, 2),
    ("token 2^63", ["release", "job", "--token", str(2**63)], {}, 2),
    ("token 0", ["release", "job", "--token", "0"], {}, 2),
    ("renew token 2^64", ["renew", "job", "--token", str(2**64)], {}, 2),
])
def test_huge_or_out_of_range_input_is_refused_fast_and_writes_nothing(label: str, args: list[str],
                                                                      env: dict[str, str], code: int,
                                                                      cli: Cli) -> None:
    assert cli("init-schema").returncode == 0
    before = store_rows(cli.store_url)
    started = time.monotonic()
    one_line(cli(*args, env=env, timeout=60), code)
    assert time.monotonic() - started < 15  # a process start and a refusal; it hung for minutes
    assert store_rows(cli.store_url) == before


@pytest.mark.parametrize(("label", "text", "needle"), [
    ("alias bomb", "x: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True))
     + "node_id: *i\n", "more than 50 aliases"),
    ("small alias bomb in a value", "node_id: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], " + ", ".join(
        f"&{k} [{', '.join([f'*{p}'] * 9)}]" for p, k in zip("abc", "bcd", strict=True)) + ", [*d,*d,*d]]\n",
     "is not valid"),
    ("duplicate key", "node_id: a\nnode_id: b\n", "duplicate key 'node_id'"),
    ("duplicate nested key", "defaults: {timeout: 1s, timeout: 2s}\n", "duplicate key 'timeout'"),
    ("30k node id", f"node_id: {'x' * 30_000}\n", "is not valid (30000 characters)"),
    ("oversize file", "# " + "x" * 70_000 + "\n", "larger than 64 KiB"),
])
def test_a_hostile_parameter_file_is_one_line_and_exit_78(label: str, text: str, needle: str, cli: Cli,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "mutexctl.yaml"
    path.write_text(text)
    started = time.monotonic()
    stderr = one_line(cli("--config", str(path), "status", timeout=60), 78)
    assert needle in stderr and time.monotonic() - started < 15, stderr


def test_config_paths_that_are_not_files_are_named_as_such(cli: Cli, tmp_path: Path) -> None:
    assert "is a directory" in one_line(cli("--config", str(tmp_path), "status"), 78)
    assert "--config is empty" in one_line(cli("--config", "", "status"), 78)
    assert "MUTEXCTL_CONFIG is empty" not in cli("status", env={"MUTEXCTL_CONFIG": ""}).stderr  # unset-like: ok


def test_an_environment_value_error_names_the_variable_once(cli: Cli) -> None:
    stderr = one_line(cli("acquire", "job", env={"MUTEXCTL_TIMEOUT": "abc"}), 78)
    assert stderr.startswith("mutexctl: MUTEXCTL_TIMEOUT 'abc' is not a duration") and stderr.count("MUTEXCTL_") == 1


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400), ("10m00s", 600), ("2m30.5s", 150.5), ("1h2m3s500ms", 3723.5), ("3d04h", 273_600),
    ("59m59s", 3599), ("45", 45), ("1.5", 1.5), ("500ms", 0.5), ("2M", 120), ("5min", 300), ("1min30s", 90),
    ("2w", 1_209_600), ("1w2d", 777_600)])
def test_durations_read_what_mutexctl_prints(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1h 30m", "h", "1x", "-1m30s", "1.2.3s", "ms", "1e3s", "5y", "5 min", "1mn", "w"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_wait_forever_is_a_wait_for_ever_and_a_timeout_of_weeks_is_taken(cli: Cli, service: Service) -> None:
    service.try_acquire("busy", timeout="1h")
    waiter = cli.popen("acquire", "busy", "--wait", "forever", "--", "true")
    try:
        wait_until(lambda: bool(service.status("busy")[0].waiters), timeout=60)  # in line, not refused
        assert waiter.poll() is None
    finally:
        waiter.kill()
        waiter.communicate(timeout=60)
    assert json.loads(cli("acquire", "long", "--timeout", "2w", "--json").stdout)["timeout_ms"] == 14 * 86_400_000
    assert "forever" in cli("acquire", "--help").stdout
    refused = cli("acquire", "x", "--timeout", "forever")  # a lease is never for ever
    assert refused.returncode == 2 and "is not a duration" in refused.stderr


def test_compound_durations_work_in_flags_env_and_the_file(cli: Cli, tmp_path: Path) -> None:
    lease = json.loads(cli("acquire", "a", "--timeout", "1h30m", "--json").stdout)
    assert lease["timeout_ms"] == 5_400_000
    assert json.loads(cli("acquire", "b", "--json", env={"MUTEXCTL_TIMEOUT": "10m00s"}).stdout)["timeout_ms"] == 600_000
    path = tmp_path / "c.yaml"
    path.write_text("defaults: {timeout: 2m30s}\n")
    assert json.loads(cli("--config", str(path), "acquire", "c", "--json").stdout)["timeout_ms"] == 150_000


def test_user_text_with_terminal_escapes_is_shown_escaped(cli: Cli, service: Service) -> None:
    service.try_acquire("job", timeout="1h")
    cli("release", "job", "--force", "--reason", "INC-1 \x1b[2J\x1b]0;pwned\x07")
    text = cli("status").stdout
    assert "\x1b" not in text and "INC-1 \\x1b[2J\\x1b]0;pwned\\x07" in text
    assert "\x1b" in json.loads(cli("status", "--json").stdout)["forced_releases"][0]["reason"]  # JSON: escaped by JSON


def test_hints_fit_the_situation(cli: Cli, service: Service, other: Service) -> None:
    first = service.try_acquire("job", timeout="200ms")
    time.sleep(0.25)
    second = other.try_acquire("job", timeout="1h")
    late = one_line(cli("release", "job", "--token", str(first.fence), "--node-id", "node-a"), 3)
    assert f"ended and it passed to node-b (fence {second.fence})" in late and "--force" not in late
    held = one_line(cli("acquire", "job"), 1)
    assert "--wait 2h" in held  # it ends in an hour: a wait that outlasts it
    expired_renew = one_line(cli("renew", "job", "--token", str(first.fence), "--node-id", "node-a"), 3)
    assert "passed to node-b" in expired_renew


def test_renew_keeps_a_token_mode_lease(cli: Cli, service: Service) -> None:
    token = cli("acquire", "nightly", "--timeout", "2s").stdout.strip()
    assert cli("renew", "nightly", "--token", token, "--timeout", "1h").returncode == 0
    [state] = service.status("nightly")
    assert state.timeout_ms == 3_600_000 and state.remaining_ms is not None and state.remaining_ms > 3_500_000
    assert cli("renew", "nightly", "--token", token).returncode == 0  # its own timeout, again
    assert service.status("nightly")[0].timeout_ms == 3_600_000
