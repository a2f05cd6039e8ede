"""The YAML parameter file, the environment and flags: lookup order and precedence."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from mutexctl import ConfigError, load_settings
from mutexctl.config import parse_duration

from ..conftest import Cli, mutexctl_argv


def test_durations_take_units_and_a_bare_number_is_seconds() -> None:
    assert [parse_duration(v) for v in ("500ms", "30s", "2m", "1h", "12", "1.5", 3)] == \
           [0.5, 30, 120, 3600, 12, 1.5, 3]
    assert parse_duration("inf", allow_inf=True) == float("inf")


def test_precedence_is_flags_then_environment_then_file_then_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("node_id: from-file\nstore: sqlite:///from/file.db\ndefaults: {timeout: 2m, wait: 5s}\n")
    env = {"MUTEXCTL_NODE_ID": "from-env", "HOME": str(tmp_path)}
    settings = load_settings(config=str(config), env=env)
    assert (settings.node_id, settings.store, settings.timeout_ms, settings.wait_s) == \
           ("from-env", "sqlite:///from/file.db", 120_000, 5.0)
    settings = load_settings(config=str(config), node_id="from-flag", env=env)
    assert settings.node_id == "from-flag"
    defaults = load_settings(env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")})
    assert defaults.node_id == socket.gethostname() and defaults.timeout_ms == 30_000 and defaults.wait_s == 0
    assert defaults.store == f"sqlite://{tmp_path / 'state' / 'mutexctl' / 'mutexctl.db'}"


def test_per_mutex_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mutexes:\n  mutexctl.schema: {timeout: 4m, wait: 6m}\n  forever: {wait: inf}\n")
    settings = load_settings(config=str(config), env={"HOME": str(tmp_path)})
    assert settings.timeout_for("mutexctl.schema") == 240_000 and settings.wait_for("mutexctl.schema") == 360
    assert settings.timeout_for("other") == 30_000 and settings.wait_for("forever") == float("inf")


def test_glob_entries_apply_the_most_specific_first_field_by_field(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text('mutexes:\n  "*": {timeout: 1m}\n  "deploy-*": {timeout: 9m}\n  "deploy-db-*": {wait: 5m}\n'
                      '  deploy-db-main: {timeout: 2m}\n')
    settings = load_settings(config=str(config), env={"HOME": str(tmp_path)})
    found = {name: (settings.timeout_for(name), settings.wait_for(name))
             for name in ("deploy-web", "deploy-db-x", "deploy-db-main", "other", "mutexctl.schema")}
    assert found == {"deploy-web": (540_000, 0), "deploy-db-x": (540_000, 300), "deploy-db-main": (120_000, 300),
                     "other": (60_000, 0), "mutexctl.schema": (120_000, 300)}  # (globs leave the built-in alone)


def test_a_glob_entry_reaches_the_cli_and_config_show_names_what_the_file_names(cli: Cli) -> None:
    (Path(cli.cwd) / "mutexctl.yaml").write_text('defaults: {timeout: 1m}\nmutexes:\n  "deploy-*": {timeout: 9m}\n')
    taken = cli("--json", "acquire", "deploy-web")
    assert taken.returncode == 0 and json.loads(taken.stdout)["timeout_ms"] == 540_000, taken.stderr
    shown = cli("config", "show").stdout
    keys = [line.split()[0] for line in shown.splitlines()[1:]]
    assert "defaults.timeout" in keys and "mutexes.deploy-*" in keys and "log_retention" in keys, shown
    assert not [key for key in keys if key.endswith(("_ms", "_s"))], shown  # no internal field names
    line = next(line for line in shown.splitlines() if line.startswith("defaults.timeout"))
    assert "1m00s" in line and "(key defaults.timeout)" in line, line
    document = json.loads(cli("--json", "config", "show").stdout)
    assert document["keys"]["timeout_ms"] == "defaults.timeout" and document["settings"]["timeout_ms"] == 60_000


def test_an_unknown_mutexctl_variable_is_a_warning_with_the_nearest_name(cli: Cli) -> None:
    done = cli("acquire", "a", "--", "true", env={"MUTEXCTL_TIMOUT": "5s", "MUTEXCTL_ZZZ": "1"})
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "mutexctl: warning: MUTEXCTL_TIMOUT is not a mutexctl variable and is ignored (did you mean MUTEXCTL_TIMEOUT?)",
        "mutexctl: warning: MUTEXCTL_ZZZ is not a mutexctl variable and is ignored"], done.stderr
    shown = cli("config", "show", env={"MUTEXCTL_NODEID": "x"})
    assert "did you mean MUTEXCTL_NODE_ID?" in shown.stderr
    nested = cli("acquire", "outer", "--", *mutexctl_argv(), "status", "outer")  # it sees MUTEXCTL_FENCE & co.
    assert nested.returncode == 0 and "warning" not in nested.stderr, nested.stderr


@pytest.mark.parametrize("place", ["cwd", "xdg", "env"])
def test_the_file_is_found_in_the_documented_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     place: str) -> None:
    monkeypatch.chdir(tmp_path)
    target = {"cwd": tmp_path / "mutexctl.yaml", "xdg": tmp_path / "xdg" / "mutexctl" / "config.yaml",
              "env": tmp_path / "elsewhere.yaml"}[place]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"node_id: found-{place}\n")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    if place == "env":
        env["MUTEXCTL_CONFIG"] = str(target)
    settings = load_settings(env=env)
    assert settings.node_id == f"found-{place}" and settings.config_file == target


def test_a_wrong_type_names_the_file_the_key_and_the_form(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mutexes:\n  deploy: {timeout: [1]}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config=str(config), env={"HOME": str(tmp_path)})
    assert str(config) in str(caught.value) and "mutexes.deploy.timeout" in str(caught.value)
    assert "ms, s, m (or min), h, d or w" in (caught.value.hint or "")


def test_the_cli_uses_a_config_file_in_the_working_directory(cli: Cli) -> None:
    (cli.cwd / "mutexctl.yaml").write_text("node_id: yaml-node\nmutexes: {deploy: {timeout: 7s}}\n")
    env = {"MUTEXCTL_NODE_ID": ""}  # an empty variable counts as unset
    assert cli("acquire", "deploy", env=env).returncode == 0
    import json

    [state] = json.loads(cli("status", "--json", env=env).stdout)["mutexes"]
    assert state["taken_by"] == "yaml-node" and state["timeout_ms"] == 7000


def test_every_file_key_and_variable_reaches_the_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("node_id: n\nstore: mongodb://db1/\ndatabase: ops\ncollection: locks\nconnect_timeout: 2s\n"
                      "log_retention: 24h\npoll_interval: 250ms\ndefaults: {timeout: 1m, wait: 10s}\n")
    settings = load_settings(config=str(config), env={"HOME": str(tmp_path)})
    assert (settings.database, settings.collection, settings.connect_timeout_ms, settings.timeout_ms,
            settings.wait_s) == ("ops", "locks", 2000, 60_000, 10.0)
    assert (settings.log_retention_s, settings.poll_interval_s) == (86_400, 0.25)
    env = {"HOME": str(tmp_path), "MUTEXCTL_TIMEOUT": "5s", "MUTEXCTL_WAIT": "inf", "MUTEXCTL_CONNECT_TIMEOUT": "300ms",
           "MUTEXCTL_DATABASE": "db2", "MUTEXCTL_COLLECTION": "c2"}
    settings = load_settings(config=str(config), env=env)
    assert (settings.database, settings.collection, settings.connect_timeout_ms, settings.timeout_ms,
            settings.wait_s) == ("db2", "c2", 300, 5000, float("inf"))
