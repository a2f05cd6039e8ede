"""The shape of the package: layers and no import circles (import-linter contracts in pyproject.toml),
small modules, a lazy public surface, and errors that cross process boundaries."""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import mutexctl
import pytest
from mutexctl import errors
from mutexctl.models import MutexState

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mutexctl"
MAX_MODULE_LINES = 400


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_public_name_resolves_and_import_mutexctl_loads_nothing_else() -> None:
    code = ("import sys; import mutexctl; before = {m for m in sys.modules if m.startswith('mutexctl')}; "
            "print(sorted(before)); [getattr(mutexctl, n) for n in mutexctl.__all__]; "
            "print(sorted(m for m in ('typer', 'rich', 'pymongo', 'yaml', 'click', 'prometheus_client') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, heavy = done.stdout.splitlines()
    assert loaded == "['mutexctl', 'mutexctl._version']" and heavy == "[]"
    assert dir(mutexctl) == sorted(mutexctl.__all__)


def _error_samples() -> list[errors.MutexctlError]:
    state = MutexState("m", True, "node-b", None, None, 1000, 3, None, datetime.now(UTC), 500)
    samples: list[errors.MutexctlError] = [
        errors.LockHeldError("m", state, hint="wait"), errors.WaitTimeoutError("m", state),
        errors.DuplicateMutexError("m", state, verb="release"),
        errors.NotOwnerError("m", "cannot release 'm'", state, hint="use --token"),
        errors.LeaseExpiredError("m", "expired", state), errors.CommandStartError("command not found: x", 127),
        errors.LimitConflictError("cannot take 'm' as a shared hold", state, hint="ask the same way"),
        errors.HeldOnHostError("m", state, message="held on this host by pid 7", hint="wait for it"),
    ]
    simple = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.MutexctlError)
              and cls.__init__ is errors.MutexctlError.__init__]
    return samples + [cls(f"a {cls.__name__}", hint="fix it") for cls in simple]


@pytest.mark.parametrize("error", _error_samples(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_details(error: errors.MutexctlError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.args == error.args and str(again) == str(error)
    assert vars(again) == vars(error)  # message, hint, mutex_id, state, status: all of it


def test_every_error_class_has_a_pickle_sample() -> None:
    classes = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.MutexctlError)}
    assert {type(e) for e in _error_samples()} == classes


def test_the_default_channel_is_defined_once() -> None:
    from mutexctl import intracom, models, service

    assert service.DEFAULT_CHANNEL is intracom.DEFAULT_CHANNEL is models.DEFAULT_CHANNEL
    defined = [p for p in ROOT.joinpath("mutexctl").rglob("*.py") if "DEFAULT_CHANNEL = " in p.read_text()]
    assert [p.name for p in defined] == ["models.py"]


def test_the_library_s_errors_never_name_a_command_line_flag() -> None:
    """Outside cli/, no string in an error's construction (message, hint) and no default of a ``what``
    or ``source`` (the argument an error names) is a flag: the CLI adds its flags (cli/hints.py)."""
    flag = re.compile(r"(?<![\w-])--[a-z]")
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "cli":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            texts: list[ast.AST] = []
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and getattr(called, "id", getattr(called, "attr", "")).endswith("Error"):
                texts = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.FunctionDef):
                names = [a.arg for a in node.args.kwonlyargs]
                texts = [d for a, d in zip(names, node.args.kw_defaults, strict=True)
                         if a in ("what", "source") and d is not None]
            for text in texts:
                for part in ast.walk(text):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and flag.search(part.value):
                        found.append(f"{path.relative_to(ROOT)}:{part.lineno}: {part.value}")
    found += [f"REMEDIES[{k}]: {v}" for k, v in errors.REMEDIES.items() if flag.search(v)]
    assert found == []
