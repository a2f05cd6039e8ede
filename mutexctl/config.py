"""The YAML parameter file, ``MUTEXCTL_*`` environment variables and flags, resolved into Settings.

Precedence is flags > environment > file > defaults. PyYAML is imported only when a file is read,
and only ``yaml.safe_load`` is used.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import ConfigError, UsageError

MAX_DURATION_S = 365 * 24 * 3600.0
MAX_NAME_LENGTH = 255
CHANNEL_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The mutex init-schema runs under, and its lease unless the file's `mutexes:` block says otherwise.
SCHEMA_MUTEX = "mutexctl.schema"
_BUILT_IN = {SCHEMA_MUTEX: (120_000, 300.0)}  # timeout 2m, wait 5m: steps run while many runners wait
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_CONNECT_TIMEOUT_MS = 5_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_FORM = "a number with a unit ms, s, m or h (e.g. 500ms, 30s, 2m); a bare number is seconds"


def parse_duration(value: object, *, what: str = "duration", allow_inf: bool = False,
                   allow_zero: bool = True) -> float:
    """Parse ``500ms``/``30s``/``2m``/``1h``/``12`` (seconds) into seconds; ``inf`` if allowed."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{what} must be a duration, not {type(value).__name__}", hint=f"use {DURATION_FORM}")
    text = str(value).strip().lower()
    if allow_inf and text in ("inf", "infinity", "forever"):
        return math.inf
    match = _DURATION.match(text)
    if not match:
        problem = "is negative" if text.startswith("-") else "is not a duration"
        extra = ", or inf" if allow_inf else ""
        raise UsageError(f"{what} {str(value)!r} {problem}", hint=f"use {DURATION_FORM}{extra}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise UsageError(f"{what} {str(value)!r} is too large; the limit is 365 days",
                         hint="use inf to wait for ever" if allow_inf else f"use {DURATION_FORM}")
    if seconds == 0 and not allow_zero:
        raise UsageError(f"{what} must be greater than zero", hint=f"use {DURATION_FORM}")
    return seconds


def parse_timeout_ms(value: object, *, what: str = "timeout") -> int:
    """A lease timeout in whole milliseconds, at least 1 ms."""
    milliseconds = round(parse_duration(value, what=what, allow_zero=False) * 1000)
    if milliseconds < 1:
        raise UsageError(f"{what} {value!r} is shorter than 1ms", hint=f"use {DURATION_FORM}")
    return milliseconds


def parse_wait_s(value: object, *, what: str = "wait") -> float:
    return parse_duration(value, what=what, allow_inf=True)


def validate_node_id(node_id: object, *, what: str = "node id") -> str:
    if not isinstance(node_id, str) or not node_id or len(node_id) > 255 \
            or not node_id.isprintable() or node_id != node_id.strip():
        raise UsageError(f"{what} {node_id!r} is not valid", hint="use 1-255 printable characters, e.g. api-1")
    return node_id


def validate_mutex_id(name: object) -> str:
    """Check a mutex name: 1-255 printable characters, not starting with ``$``.

    ``$`` is refused because MongoDB reads such strings as field paths inside update pipelines.
    """
    if not isinstance(name, str):
        raise UsageError(f"mutex name must be a string, not {type(name).__name__}")
    hint = "use 1-255 printable characters, e.g. 'billing-nightly-export'"
    if not name:
        raise UsageError("mutex name is empty", hint=hint)
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"mutex name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}", hint=hint)
    bad = next((ch for ch in name if not ch.isprintable()), None)
    if bad is not None:
        raise UsageError(f"mutex name contains the control character {bad!r}", hint=hint)
    if name.startswith("$"):
        raise UsageError(f"mutex name {name!r} starts with '$'", hint=hint)
    if name != name.strip():
        raise UsageError(f"mutex name {name!r} starts or ends with a space", hint=hint)
    return name


def validate_channel(channel: object) -> str:
    if not isinstance(channel, str) or not CHANNEL_FORM.match(channel):
        raise UsageError(f"channel name {channel!r} is not valid",
                         hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return channel


def validate_action(action: object) -> str:
    """An action name follows the rules of a mutex name."""
    try:
        return validate_mutex_id(action)
    except UsageError as exc:
        raise UsageError(exc.message.replace("mutex name", "action"), hint=exc.hint) from None


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
    poll_interval_s: float = 1.0  # how often an idle listener reads the log
    mutexes: Mapping[str, MutexOverride] = MappingProxyType({})
    config_file: Path | None = None

    def timeout_for(self, mutex_id: str) -> int:
        """The lease timeout (ms) of ``mutex_id``: its ``mutexes:`` entry, a built-in one, or the default."""
        override = self.mutexes.get(mutex_id)
        if override and override.timeout_ms:
            return override.timeout_ms
        return _BUILT_IN[mutex_id][0] if mutex_id in _BUILT_IN else self.timeout_ms

    def wait_for(self, mutex_id: str) -> float:
        """How long to wait for ``mutex_id`` (seconds): its entry, a built-in one, or the default."""
        override = self.mutexes.get(mutex_id)
        if override and override.wait_s is not None:
            return override.wait_s
        return _BUILT_IN[mutex_id][1] if mutex_id in _BUILT_IN else self.wait_s


def host_name() -> str:
    """This machine's name (the default node id, and the host recorded with a lease)."""
    return os.uname().nodename


def default_store_url(env: Mapping[str, str]) -> str:
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite://{Path(state_home).absolute() / 'mutexctl' / 'mutexctl.db'}"  # an absolute path: sqlite:///…


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The first parameter file in DESIGN.md's lookup order; an explicitly named one must exist."""
    named = explicit or env.get("MUTEXCTL_CONFIG")
    if named:
        path = Path(named).absolute()
        if not path.is_file():
            source = "--config" if explicit else "MUTEXCTL_CONFIG"
            raise ConfigError(f"config file {named} (from {source}) does not exist",
                              hint="fix the path, or drop it to use the default lookup")
        return path
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path("mutexctl.yaml"), Path(config_home) / "mutexctl" / "config.yaml",
                      Path("/etc/mutexctl/config.yaml")):
        if candidate.is_file():
            return candidate.absolute()
    return None


def load_settings(*, config: str | None = None, store: str | None = None, node_id: str | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Resolve Settings the way the CLI does. Raises ConfigError for a bad file or environment."""
    env = os.environ if env is None else env
    path = find_config_file(config, env)
    values: dict[str, Any] = _read_file(path) if path else {}
    for key, var in (("node_id", "MUTEXCTL_NODE_ID"), ("store", "MUTEXCTL_STORE"),
                     ("database", "MUTEXCTL_DATABASE"), ("collection", "MUTEXCTL_COLLECTION"),
                     ("timeout", "MUTEXCTL_TIMEOUT"),
                     ("wait", "MUTEXCTL_WAIT"), ("connect_timeout", "MUTEXCTL_CONNECT_TIMEOUT"),
                     ("log_retention", "MUTEXCTL_LOG_RETENTION"), ("poll_interval", "MUTEXCTL_POLL_INTERVAL")):
        if env.get(var):
            values[_FIELD.get(key, key)] = _checked(var, lambda v=env[var], k=key, w=var: _convert(k, v, w))
    if node_id is not None:
        values["node_id"] = validate_node_id(node_id, what="--node-id")
    if store is not None:
        values["store"] = store
    values.setdefault("node_id", host_name())
    values.setdefault("store", default_store_url(env))
    return Settings(config_file=path, **values)


def _checked(source: str, convert: Any) -> Any:
    try:
        return convert()
    except UsageError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None


def _convert(key: str, value: object, what: str) -> Any:
    if key in ("timeout", "connect_timeout"):
        return parse_timeout_ms(value, what=what)
    if key in ("log_retention", "poll_interval"):
        return parse_duration(value, what=what, allow_zero=False)
    if key in ("database", "collection"):
        return _validate_db_name(value, what)
    if key == "wait":
        return parse_wait_s(value, what=what)
    if key == "node_id":
        return validate_node_id(value, what=what)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string, not {value!r}")
    return value


def _validate_db_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 63 or value.startswith("$") \
            or any(ch in value for ch in '/\\. "$\x00') or not value.isprintable():
        raise UsageError(f"{what} {value!r} is not a valid database or collection name",
                         hint="use letters, digits, '-' and '_', e.g. mutexctl")
    return value


# File and environment keys -> Settings fields, where the field name carries the unit.
_FIELD = {"timeout": "timeout_ms", "wait": "wait_s", "connect_timeout": "connect_timeout_ms",
          "log_retention": "log_retention_s", "poll_interval": "poll_interval_s"}
_TOP_KEYS = ("node_id", "store", "database", "collection", "connect_timeout", "log_retention", "poll_interval",
             "defaults", "mutexes")
_LEASE_KEYS = ("timeout", "wait")


def _read_file(path: Path) -> dict[str, Any]:
    import yaml  # only when a file is actually read: it costs start-up time

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def _settings_from_document(path: Path, document: dict[Any, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in _TOP_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}'", hint=f"known keys: {', '.join(_TOP_KEYS)}")
        if key == "defaults":
            values.update(_lease_block(path, "defaults", value))
        elif key == "mutexes":
            values["mutexes"] = _mutexes_block(path, value)
        else:
            values[_FIELD.get(key, key)] = _checked(f"{path}: key '{key}'",
                                                    lambda k=key, v=value: _convert(k, v, "the value"))
    return values


def _lease_block(path: Path, dotted: str, block: object) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: key '{dotted}' must be a mapping like {{timeout: 30s, wait: 0}}, not {block!r}")
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key not in _LEASE_KEYS:
            raise ConfigError(f"{path}: unknown key '{dotted}.{key}'", hint="known keys: timeout, wait")
        converted = _checked(f"{path}: key '{dotted}.{key}'", lambda k=key, v=value: _convert(k, v, "the value"))
        out[_FIELD[key]] = converted
    return out


def _mutexes_block(path: Path, block: object) -> dict[str, MutexOverride]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: key 'mutexes' must be a mapping of mutex name to {{timeout, wait}}")
    overrides = {}
    for name, lease in block.items():
        _checked(f"{path}: key 'mutexes'", lambda n=name: validate_mutex_id(n))
        overrides[name] = MutexOverride(**_lease_block(path, f"mutexes.{name}", lease))
    return overrides
