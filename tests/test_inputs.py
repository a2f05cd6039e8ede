"""Bounded, hostile and human input: one line, the documented status, in well under a second of work,
nothing written; durations as mutexctl prints them; hints that fit the situation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mutexctl import Service
from mutexctl.inputs import parse_duration

from .conftest import Cli, store_rows

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
    ("59m59s", 3599), ("45", 45), ("1.5", 1.5), ("500ms", 0.5), ("2M", 120)])
def test_durations_read_what_mutexctl_prints(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1h 30m", "h", "1x", "-1m30s", "1.2.3s", "ms", "1e3s"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


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
