"""Generate ``completions/`` and ``man/mutexctl.1`` from the Typer app.

    python -m mutexctl.cli.gendocs          # write them (commit the result)
    python -m mutexctl.cli.gendocs --check  # exit 1 if the committed files differ (a test runs this)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from .._version import __version__
from .app import app
from .exit_codes import EXIT_STATUS_TABLE

ROOT = Path(__file__).resolve().parents[2]
# Where each shell looks for a completion (the paths pyproject.toml installs them under share/).
SHELLS = {"bash": "bash/mutexctl", "zsh": "zsh/_mutexctl", "fish": "fish/mutexctl.fish"}

ENVIRONMENT = (
    ("MUTEXCTL_CONFIG", "Path of the YAML parameter file (like --config)."),
    ("MUTEXCTL_STORE", "Store URL (like --store)."),
    ("MUTEXCTL_NODE_ID", "Node id that holds leases (like --node-id); default: the host name."),
    ("MUTEXCTL_DATABASE", "Database on a MongoDB store; default: the one in the URL, else mutexctl."),
    ("MUTEXCTL_COLLECTION", "Collection of the mutexes on a MongoDB store; default mutexes."),
    ("MUTEXCTL_TIMEOUT", "Default lease timeout (e.g. 30s)."),
    ("MUTEXCTL_WAIT", "Default wait for a busy mutex (e.g. 5m, inf); default 0, one try."),
    ("MUTEXCTL_CONNECT_TIMEOUT", "How long to look for a MongoDB server before exit 69; default 5s."),
    ("MUTEXCTL_LOG_RETENTION", "How long the broadcast log is kept (default 168h)."),
    ("MUTEXCTL_POLL_INTERVAL", "How often an idle listener reads the log (default 1s)."),
    ("MUTEXCTL_MESSAGE_ID, MUTEXCTL_ACTION, MUTEXCTL_SENDER, MUTEXCTL_CHANNEL",
     "Set for a listen handler."),
    ("XDG_STATE_HOME", "The default store is $XDG_STATE_HOME/mutexctl/mutexctl.db (~/.local/state)."),
    ("XDG_CONFIG_HOME", "The parameter file may be $XDG_CONFIG_HOME/mutexctl/config.yaml (~/.config)."),
    ("NO_COLOR", "Turns colour off on a terminal."),
    ("MUTEXCTL_MUTEX_ID, MUTEXCTL_NODE_ID, MUTEXCTL_FENCE, MUTEXCTL_LOCK_HELD",
     "Set for a command run under a lease (exec mode)."),
)

FILES = (
    ("./mutexctl.yaml", "Parameter file in the working directory (first in the lookup)."),
    ("$XDG_CONFIG_HOME/mutexctl/config.yaml", "Per-user parameter file."),
    ("/etc/mutexctl/config.yaml", "System-wide parameter file."),
    ("$XDG_STATE_HOME/mutexctl/mutexctl.db", "The default embedded store (SQLite)."),
)

# The README's section "Sharing mutexes with other services", in short.
SHARING = (
    ("mutexId", "The mutex's name, a string with a unique index {mutexId: 1} (mutexctl init-schema, step 4; "
                "named mutexId_1, and any unique index on that key counts). Documents are found by it, never "
                "by _id; those mutexctl inserts get _id = mutexId."),
    ("taken", "true while held; V sets false and keeps the document."),
    ("takenAt", 'When the lease was taken or last renewed, "2026-11-27T12:03:06.908Z" (UTC, ms), from the '
                "server's clock ($$NOW)."),
    ("takenBy", "The holder's node id."),
    ("timeout", "The lease's length in milliseconds (an int32; a long only past 24.8 days)."),
)
SHARING_RULES = (
    "A lease ends at takenAt + timeout, on the server's clock, for every reader; a renewal rewrites takenAt. "
    "Take a mutex with one findOneAndUpdate (upsert: true) whose filter matches free or ended: a duplicate "
    "key error (11000) from the unique index means held. Write with w: majority; guard V by takenBy and the "
    "takenAt your P wrote. Update with $set, never replace the document (a replace drops the fence). "
    "Leave mutexctl's own fields alone (fence, holder, releasedLate, waiters, slots, forced): they carry the "
    "takenAt and takenBy they belong to, and a foreign write makes them void. A reader judges every kind of "
    "document (exclusive, semaphore, shared) the same way: held iff taken and now < takenAt + timeout, "
    "with the document's own timeout. mutexctl's waiters queue in the array waiters and are served in "
    "order; a foreign P that takes a free mutex ahead of them keeps exclusion, only not their order.",
    "mutexctl also reads takenAt as ISO-8601 with any fraction, Z, an offset or no zone (UTC), a BSON Date, "
    "or epoch milliseconds (number or digit string), and timeout as int, long, double or digit string. Any "
    "other form (unparsable text, null, a missing field) is never judged expired: status shows the mutex "
    "held with expiry unknown, acquire refuses it (exit 1), release --force --reason frees it. Several "
    "documents with one mutexId are never taken (status: duplicate; init-schema exit 4) until one is left. "
    "A foreign V of a mutexctl lease is noticed at its next renewal (exec mode: exit 75). "
    "README.md shows P and V for Node.js and Java.",
)

EXAMPLES = (
    ("Run a migration while holding the lease; its exit status is returned:",
     "mutexctl acquire deploy --wait 5m -- ./migrate.sh"),
    ("Hold a lease across several steps of a script, by token:",
     'TOKEN=$(mutexctl acquire nightly --timeout 1h) || exit\n./step1 && ./step2\n'
     'mutexctl release nightly --token "$TOKEN"'),
    ("See who holds what, and why a lease is stuck:", "mutexctl status"),
    ("Ask every other instance to reload, and wait for their answers:",
     "mutexctl listen -- ./reload.sh &    # on each instance\nmutexctl broadcast reload --wait-acks -w 30s"),
    ("Initialize the store from CI, safely in parallel:",
     "mutexctl init-schema --wait 10m && mutexctl init-schema --check"),
    ("Break a stuck lease, on the record:", 'mutexctl release deploy --force --reason "runner VM deleted, INC-123"'),
)


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]" for ch in text)  # e.g. "…" -> \[u2026]
    lines = []
    for line in text.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _param_synopsis(param: Any) -> str:
    names = ", ".join(param.opts)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return names
    return f"{names} {param.metavar or param.type.name.upper()}"


def _options(command: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    out = []
    for param in command.params:
        if param.param_type_name != "option" or param.hidden or param.name in skip:
            continue
        out += [".TP", f"\\fB{_roff(_param_synopsis(param))}\\fR", _roff(param.help or "")]
    return out


def _arguments(command: Any) -> str:
    words = []
    for param in command.params:
        if param.param_type_name == "argument":
            metavar = param.metavar or param.name.upper()
            words.append(metavar if param.required else (metavar if metavar.startswith("[") else f"[{metavar}]"))
    return " ".join(words)


def man_page() -> str:
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="mutexctl")
    commands = root.list_commands(ctx)  # type: ignore[attr-defined]
    global_names = frozenset(p.name for p in root.params if p.name)
    lines = [f'.TH MUTEXCTL 1 "" "mutexctl {__version__}" "User Commands"', ".SH NAME",
             "mutexctl \\- named leases (mutexes with a timeout) shared through a database", ".SH SYNOPSIS",
             "\\fBmutexctl\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...", ".SH DESCRIPTION",
             _roff(root.help or ""), ".SH GLOBAL OPTIONS",
             "They are accepted before the command name and after it.", *_options(root)]
    for name in commands:
        command = root.get_command(ctx, name)  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:  # a group: its help, then each subcommand
            lines += [f".SH COMMAND: {name.upper()}", ".PP", _roff(command.help or "")]
            for sub_name, sub in subcommands.items():
                lines += [f".SS {name} {sub_name}", f"\\fBmutexctl {name} {sub_name}\\fR {_roff(_arguments(sub))}",
                          ".PP", _roff(sub.help or ""), *_options(sub, global_names)]
            continue
        lines += [f".SH COMMAND: {name.upper()}", f"\\fBmutexctl {name}\\fR {_roff(_arguments(command))}",
                  ".PP", _roff(command.help or ""), *_options(command, global_names)]
    lines += [".SH SHARING MUTEXES WITH OTHER SERVICES", _roff("Services in other languages share the MongoDB "
              "collection mutexes with mutexctl. A document's fields:")]
    for field, meaning in SHARING:
        lines += [".TP", f"\\fB{_roff(field)}\\fR", _roff(meaning)]
    for rule in SHARING_RULES:
        lines += [".PP", _roff(rule)]
    lines += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS_TABLE:
        lines += [".TP", f"\\fB{_roff(code)}\\fR", _roff(meaning)]
    lines += [".SH ENVIRONMENT"]
    for var, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{_roff(var)}\\fR", _roff(meaning)]
    lines += [".SH FILES"]
    for path, meaning in FILES:
        lines += [".TP", f"\\fI{_roff(path)}\\fR", _roff(meaning)]
    lines += [".SH EXAMPLES"]
    for say, example in EXAMPLES:
        lines += [".PP", _roff(say), ".PP", ".nf", ".RS 4", _roff(example), ".RE", ".fi"]
    lines += [".SH SEE ALSO", "\\fBflock\\fR(1)", ""]
    return "\n".join(lines)


def completion_script(shell: str) -> str:
    """Ask the app itself, as a shell would, for its completion script."""
    env = dict(os.environ, _MUTEXCTL_COMPLETE=f"source_{shell}")
    done = subprocess.run([sys.executable, "-m", "mutexctl"], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def generated() -> dict[Path, str]:
    files = {ROOT / "man" / "mutexctl.1": man_page()}
    for shell, filename in SHELLS.items():
        files[ROOT / "completions" / filename] = completion_script(shell)
    return files


def main(argv: list[str]) -> int:
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if "--check" not in argv:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if "--check" in argv and stale:
        print("out of date (run python -m mutexctl.cli.gendocs): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
