"""A MongoDB wire-protocol server for the tests: the pinned mongoeco, in a Python >= 3.13 venv of its own.

``MUTEXCTL_TEST_MONGODB_URI`` set: the suite uses that server (a real MongoDB) and starts nothing.
Otherwise the first use builds ``.cache/mongoeco-venv`` (about 20 s, then reused) from a Python 3.13
found under pyenv or on PATH (``MUTEXCTL_TEST_PYTHON`` names one), and starts servers from it.
"""

from __future__ import annotations

import fcntl
import glob
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MONGOECO = "mongoeco[wire]==4.11.0"
VENV = ROOT / ".cache" / "mongoeco-venv"
LAUNCHER = Path(__file__).parent / "mongoeco_server.py"


class ServerUnavailableError(RuntimeError):
    """The wire server could not be built or started; the message says why."""


def _is_313_or_newer(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 13))"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.13.0")})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.stdout.strip() == "True"


def find_python313() -> str:
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [os.environ.get("MUTEXCTL_TEST_PYTHON", ""),
                  *sorted(glob.glob(f"{pyenv_root}/versions/3.1[3-9]*/bin/python3"), reverse=True),
                  shutil.which("python3.14") or "", shutil.which("python3.13") or ""]
    if sys.version_info >= (3, 13):
        candidates.insert(0, sys.executable)
    for python in filter(None, candidates):
        if _is_313_or_newer(python):
            return python
    raise ServerUnavailableError("no Python >= 3.13 found for the mongoeco test server "
                            "(install one under pyenv, or set MUTEXCTL_TEST_PYTHON)")


def ensure_venv() -> Path:
    """The venv's python, built once (under a file lock, so parallel runs do not race)."""
    python = VENV / "bin" / "python"
    marker = VENV / "mutexctl-installed.txt"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "mongoeco-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == MONGOECO and python.exists():
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        base = find_python313()
        steps = [[base, "-m", "venv", str(VENV)],
                 [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MONGOECO]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise ServerUnavailableError(f"building the mongoeco venv failed at {' '.join(step[:4])}: "
                                        f"{(done.stderr or done.stdout).strip()[-800:]}")
        marker.write_text(MONGOECO)
    return python


class MongoServer:
    """One mongoeco wire server process: memory engine, or SQLite (survives kill -9) with ``path``."""

    def __init__(self, *, sqlite_path: Path | None = None, port: int = 0, user: str | None = None) -> None:
        self.sqlite_path, self.port, self.user = sqlite_path, port, user
        self.process: subprocess.Popen[str] | None = None
        self.uri = ""

    def start(self, timeout: float = 30.0) -> str:
        argv = [str(ensure_venv()), str(LAUNCHER), "--port", str(self.port)]
        if self.sqlite_path is not None:
            argv += ["--sqlite", str(self.sqlite_path)]
        if self.user:
            argv += ["--user", self.user]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("mongodb://"):
            self.kill()
            err = self.process.stderr.read() if self.process.stderr else ""
            raise ServerUnavailableError(f"the mongoeco server did not start: {err.strip()[-800:] or 'no output'}")
        self.uri = line
        self.port = int(line.split(":")[2].split("/")[0])
        return line

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def with_database(uri: str, database: str) -> str:
    """``mongodb://h:p/?opts`` -> ``mongodb://h:p/DATABASE?opts``."""
    head, _, query = uri.partition("?")
    scheme, _, rest = head.partition("://")
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{database}" + (f"?{query}" if query else "")
