"""Bad input: one line (and a hint), the documented exit code, no traceback, and an unchanged store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mutexctl import Service

from .conftest import Cli, store_rows

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
    ("unknown unit", ["acquire", "job", "--timeout", "5w"]),
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


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(cli: Cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("precious data\n" * 100)
    line = assert_one_line_error(cli("--store", f"sqlite://{notes}", "acquire", "job"), 78)
    assert "is not a mutexctl SQLite database" in line
    assert notes.read_text() == "precious data\n" * 100


def test_errors_are_json_documents_with_json(cli: Cli) -> None:
    done = cli("acquire", "", "--json")
    assert done.returncode == 2 and done.stderr == ""
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["error"]["exit_code"] == 2 and document["error"]["kind"] == "usage"
    done = cli("--json", "acquire", "job", "--bogus")
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["kind"] == "usage"


def test_credentials_in_a_store_url_never_appear_in_errors(cli: Cli) -> None:
    done = cli("--store", "redis://admin:s3cret@db.example/0", "acquire", "job")
    assert done.returncode == 78 and "s3cret" not in done.stderr and "admin" not in done.stderr
    done = cli("--json", "--store", "redis://admin:s3cret@db.example/0", "status")
    assert "s3cret" not in done.stdout
