"""The YAML parameter file, ``MUTEXCTL_*`` environment variables and flags, resolved into Settings.

Precedence is flags > environment > file > defaults; ``resolve`` also tells where each value came
from (``mutexctl config show``). PyYAML is imported only when a file is read, and the file is read
with a safe loader that refuses duplicate keys and bounds the file's size and its aliases.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import ConfigError, UsageError
from .identity import host_name
from .inputs import (
    MAX_NAME_LENGTH,
    parse_duration,
    parse_timeout_ms,
    parse_wait_s,
    shown,
    validate_action,
    validate_channel,
    validate_mutex_id,
    validate_node_id,
)

__all__ = ["MAX_NAME_LENGTH", "MutexOverride", "Settings", "load_settings", "parse_duration", "parse_timeout_ms",
           "parse_wait_s", "resolve", "validate_action", "validate_channel", "validate_mutex_id", "validate_node_id"]

# The mutex init-schema runs under, and its lease unless the file's `mutexes:` block says otherwise.
SCHEMA_MUTEX = "mutexctl.schema"
_BUILT_IN = {SCHEMA_MUTEX: (120_000, 300.0)}  # timeout 2m, wait 5m: steps run while many runners wait
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_CONNECT_TIMEOUT_MS = 5_000
MAX_CONFIG_BYTES = 64 * 1024
MAX_ALIASES = 50  # YAML anchors used (*name): enough for shared blocks, too few for an alias bomb


class MutexOverride(NamedTuple):
    timeout_ms: int | None = None
    wait_s: float | None = None


class Settings(NamedTuple):
    """Everything a command or a service needs to know, resolved (see load_settings)."""

    node_id: str
    store: str
    database: str | None = None  # None: the database named in a MongoDB URL's path, else "mutexctl"
    collection: str = "mutexes"
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    wait_s: float = 0.0
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    log_retention_s: float = 7 * 24 * 3600.0  # the broadcast log's TTL
    history_retention_s: float = 30 * 24 * 3600.0  # the lease history's TTL
    poll_interval_s: float = 1.0  # how often an idle listener reads the log
    mutexes: Mapping[str, MutexOverride] = MappingProxyType({})
    config_file: Path | None = None

    def timeout_for(self, mutex_id: str) -> int:
        """The lease timeout (ms) of ``mutex_id``: its ``mutexes:`` entry (see ``override``), a built-in
        one, or the default."""
        found = self.override(mutex_id, "timeout_ms")
        if found is not None:
            return int(found)
        return _BUILT_IN[mutex_id][0] if mutex_id in _BUILT_IN else self.timeout_ms

    def wait_for(self, mutex_id: str) -> float:
        """How long to wait for ``mutex_id`` (seconds): its entry, a built-in one, or the default."""
        found = self.override(mutex_id, "wait_s")
        if found is not None:
            return found
        return _BUILT_IN[mutex_id][1] if mutex_id in _BUILT_IN else self.wait_s

    def override(self, mutex_id: str, field: str) -> float | None:
        """``field`` of ``mutex_id``'s ``mutexes:`` entries: its own name's, else that of the most specific
        glob that matches it and sets the field (the most characters that are not wildcards; the first
        in the file among equals). Globs never apply to mutexctl's own mutexes (``mutexctl.schema``)."""
        exact = self.mutexes.get(mutex_id)
        if exact is not None and getattr(exact, field) is not None:
            return float(getattr(exact, field))
        if mutex_id in _BUILT_IN:
            return None
        best: tuple[int, float] | None = None
        for pattern, entry in self.mutexes.items():
            value = getattr(entry, field)
            if value is None or not is_glob(pattern) or not fnmatch.fnmatchcase(mutex_id, pattern):
                continue
            literal = len(pattern) - sum(pattern.count(ch) for ch in "*?[]")
            if best is None or literal > best[0]:
                best = (literal, float(value))
        return None if best is None else best[1]


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


DEFAULT_STORE_SOURCE = "default ($XDG_STATE_HOME)"


def default_store_url(env: Mapping[str, str]) -> str:
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite://{Path(state_home).absolute() / 'mutexctl' / 'mutexctl.db'}"  # an absolute path: sqlite:///…


# How values given by the caller are named where their source is told (errors, ``config show``): the
# library's arguments; the CLI passes its flags (cli/common.FLAG_SOURCES).
ARGUMENT_SOURCES: Mapping[str, str] = MappingProxyType({"config": "config=", "store": "store=", "node_id": "node_id="})


def find_config_file(explicit: str | None, env: Mapping[str, str], *,
                     given: Mapping[str, str] = ARGUMENT_SOURCES) -> Path | None:
    """The first parameter file in the lookup order (the README's "Configuration"); an explicitly named
    one must exist. ``given``: how the caller's own values are named (see ARGUMENT_SOURCES)."""
    named, source = (explicit, given["config"]) if explicit is not None else \
        (env.get("MUTEXCTL_CONFIG"), "MUTEXCTL_CONFIG")
    if named is not None and (explicit is not None or named):
        if not named.strip():
            raise ConfigError(f"{source} is empty", hint="name a YAML file, or drop it to use the default lookup")
        path = Path(named).absolute()
        try:
            path.stat()
        except PermissionError as exc:
            raise ConfigError(f"config file {shown(named, 200)} (from {source}) cannot be reached: {exc.strerror}",
                              hint="give this user access to it and its directories, or name another") from exc
        except OSError:
            pass  # (missing: said below)
        if path.is_dir():
            raise ConfigError(f"config file {shown(named, 200)} (from {source}) is a directory",
                              hint="name the YAML file in it, e.g. config.yaml")
        if not path.is_file():
            raise ConfigError(f"config file {shown(named, 200)} (from {source}) does not exist",
                              hint="fix the path, or drop it to use the default lookup")
        return path
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path("mutexctl.yaml"), Path(config_home) / "mutexctl" / "config.yaml",
                      Path("/etc/mutexctl/config.yaml")):
        if _is_file(candidate):
            return candidate.absolute()
    return None


def _is_file(path: Path) -> bool:
    """For the lookup: a place this user may not look into (a 0700 home) holds no file of theirs."""
    try:
        return path.is_file()
    except OSError:
        return False


_ENV = (("node_id", "MUTEXCTL_NODE_ID"), ("store", "MUTEXCTL_STORE"), ("database", "MUTEXCTL_DATABASE"),
        ("collection", "MUTEXCTL_COLLECTION"), ("timeout", "MUTEXCTL_TIMEOUT"), ("wait", "MUTEXCTL_WAIT"),
        ("connect_timeout", "MUTEXCTL_CONNECT_TIMEOUT"), ("log_retention", "MUTEXCTL_LOG_RETENTION"),
        ("history_retention", "MUTEXCTL_HISTORY_RETENTION"), ("poll_interval", "MUTEXCTL_POLL_INTERVAL"))


# Variables mutexctl sets for the commands and handlers it runs (a nested mutexctl sees them), and those
# of its own test suite: known, though no setting.
SET_FOR_COMMANDS = ("MUTEXCTL_MUTEX_ID", "MUTEXCTL_FENCE", "MUTEXCTL_LOCK_HELD", "MUTEXCTL_ACTION", "MUTEXCTL_CHANNEL",
                    "MUTEXCTL_MESSAGE_ID", "MUTEXCTL_SENDER", "MUTEXCTL_REQUIRE_MONGODB")


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """The ``MUTEXCTL_*`` variables mutexctl does not read (a misspelt ``MUTEXCTL_TIMOUT`` is otherwise
    silently ignored), each with the nearest variable it does read, if one is near."""
    import difflib

    env = os.environ if env is None else env
    settings = ["CONFIG", *(var.removeprefix("MUTEXCTL_") for _, var in _ENV)]  # (the prefix is no likeness)
    known = {*(f"MUTEXCTL_{name}" for name in settings), *SET_FOR_COMMANDS}

    def nearest(name: str) -> str | None:
        found = difflib.get_close_matches(name.removeprefix("MUTEXCTL_"), settings, n=1, cutoff=0.75)
        return f"MUTEXCTL_{found[0]}" if found else None

    return [(name, nearest(name)) for name in sorted(env)
            if name.startswith("MUTEXCTL_") and name not in known and not name.startswith("MUTEXCTL_TEST_")]


def file_key(field: str) -> str:
    """A Settings field by the parameter file's name for it (``timeout_ms``: ``defaults.timeout``)."""
    key = _KEY_OF.get(field, field)
    return f"defaults.{key}" if key in _LEASE_KEYS else key


def resolve(*, config: str | None = None, store: str | None = None, node_id: str | None = None,
            env: Mapping[str, str] | None = None,
            given: Mapping[str, str] = ARGUMENT_SOURCES) -> tuple[Settings, dict[str, str]]:
    """Settings the way the CLI resolves them, and where each field came from ("store=" or, from the
    CLI, "--store"; "MUTEXCTL_STORE", "<file> (key store)", "default"). Raises ConfigError for a bad
    file or environment."""
    env = os.environ if env is None else env
    path = find_config_file(config, env, given=given)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path:
        for field, (value, key) in _read_file(path).items():
            values[field], sources[field] = value, f"{path} (key {key})"
    for key, var in _ENV:
        if env.get(var):
            field = _FIELD.get(key, key)
            values[field], sources[field] = _from_env(var, key, env[var]), var
    if node_id is not None:
        values["node_id"], sources["node_id"] = validate_node_id(node_id, what="node id"), given["node_id"]
    if store is not None:
        values["store"], sources["store"] = store, given["store"]
    if "node_id" not in values:
        values["node_id"], sources["node_id"] = host_name(), "default (the host name)"
    if "store" not in values:
        values["store"], sources["store"] = default_store_url(env), DEFAULT_STORE_SOURCE
    settings = Settings(config_file=path, **values)
    return settings, {field: sources.get(field, "default") for field in Settings._fields if field != "config_file"}


def load_settings(*, config: str | None = None, store: str | None = None, node_id: str | None = None,
                  env: Mapping[str, str] | None = None, given: Mapping[str, str] = ARGUMENT_SOURCES) -> Settings:
    """Resolve Settings the way the CLI does. Raises ConfigError for a bad file or environment."""
    return resolve(config=config, store=store, node_id=node_id, env=env, given=given)[0]


def _from_env(var: str, key: str, value: str) -> Any:
    try:
        return _convert(key, value, var)
    except UsageError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None


def _checked(source: str, convert: Any) -> Any:
    try:
        return convert()
    except UsageError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None


def _convert(key: str, value: object, what: str) -> Any:
    if key in ("timeout", "connect_timeout"):
        return parse_timeout_ms(value, what=what)
    if key in ("log_retention", "history_retention", "poll_interval"):
        return parse_duration(value, what=what, allow_zero=False)
    if key in ("database", "collection"):
        return _validate_db_name(value, what)
    if key == "wait":
        return parse_wait_s(value, what=what)
    if key == "node_id":
        return validate_node_id(value, what=what)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string, not {shown(value)}")
    return value


def _validate_db_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 63 or value.startswith("$") \
            or any(ch in value for ch in '/\\. "$\x00') or not value.isprintable():
        raise UsageError(f"{what} {shown(value)} is not a valid database or collection name",
                         hint="use letters, digits, '-' and '_', e.g. mutexctl")
    return value


# File and environment keys -> Settings fields, where the field name carries the unit.
_FIELD = {"timeout": "timeout_ms", "wait": "wait_s", "connect_timeout": "connect_timeout_ms",
          "log_retention": "log_retention_s", "history_retention": "history_retention_s",
          "poll_interval": "poll_interval_s"}
_KEY_OF = {field: key for key, field in _FIELD.items()}
_TOP_KEYS = ("node_id", "store", "database", "collection", "connect_timeout", "log_retention", "history_retention",
             "poll_interval", "defaults", "mutexes")
_LEASE_KEYS = ("timeout", "wait")


def _read_file(path: Path) -> dict[str, tuple[Any, str]]:
    """The file's settings: field -> (value, the key it came from)."""
    import yaml  # only when a file is actually read: it costs start-up time

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB",
                              hint="a parameter file holds a few settings; is this the right file?")
        document = yaml.load(data.decode("utf-8"), Loader=_loader())  # a SafeLoader, see _loader
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        reason = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{path}: malformed YAML{at}: {reason}",
                          hint="check indentation and quoting; the file must be a YAML mapping") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the file must be a mapping of keys ({', '.join(_TOP_KEYS)}), "
                          f"not a {type(document).__name__}")
    return _settings_from_document(path, document)


@functools.cache
def _loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader, plus: duplicate keys are errors, and at most MAX_ALIASES aliases."""

        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                    raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name); "
                                                      "a parameter file needs few", mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return Loader


def _settings_from_document(path: Path, document: dict[Any, Any]) -> dict[str, tuple[Any, str]]:
    values: dict[str, tuple[Any, str]] = {}
    for key, value in document.items():
        if key not in _TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {shown(key)}", hint=f"known keys: {', '.join(_TOP_KEYS)}")
        if key == "defaults":
            values.update({field: (v, f"defaults.{k}") for field, (v, k) in _lease_block(path, "defaults",
                                                                                          value).items()})
        elif key == "mutexes":
            values["mutexes"] = (_mutexes_block(path, value), "mutexes")
        else:
            values[_FIELD.get(key, key)] = (_checked(f"{path}: key '{key}'",
                                                     lambda k=key, v=value: _convert(k, v, "the value")), key)
    return values


def _lease_block(path: Path, dotted: str, block: object) -> dict[str, tuple[Any, str]]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: key '{dotted}' must be a mapping like {{timeout: 30s, wait: 0}}, "
                          f"not {shown(block)}")
    out: dict[str, tuple[Any, str]] = {}
    for key, value in block.items():
        if key not in _LEASE_KEYS:
            raise ConfigError(f"{path}: unknown key '{dotted}.{shown(key)}'", hint="known keys: timeout, wait")
        converted = _checked(f"{path}: key '{dotted}.{key}'", lambda k=key, v=value: _convert(k, v, "the value"))
        out[_FIELD[key]] = (converted, key)
    return out


def _mutexes_block(path: Path, block: object) -> dict[str, MutexOverride]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: key 'mutexes' must be a mapping of mutex name to {{timeout, wait}}")
    overrides = {}
    for name, lease in block.items():
        _checked(f"{path}: key 'mutexes'", lambda n=name: validate_mutex_id(n))
        overrides[name] = MutexOverride(**{field: v for field, (v, _) in
                                           _lease_block(path, f"mutexes.{name}", lease).items()})
    return overrides
