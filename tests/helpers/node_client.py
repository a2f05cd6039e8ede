"""The second, independent client for the interop suite: Node.js with the official ``mongodb`` driver.

The first use installs the driver pinned in ``tests/interop/package.json`` into ``.cache/node-interop``
(npm, a few seconds; reused after), under a file lock so parallel runs do not race.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "interop"
PREFIX = ROOT / ".cache" / "node-interop"


class NodeUnavailableError(RuntimeError):
    """Node.js or its driver could not be found or installed; the message says why."""


def ensure_driver() -> Path:
    """The node_modules folder holding the pinned driver (installed on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailableError("node and npm are needed for the interop suite (install Node.js 18 or newer)")
    manifest = (SOURCE / "package.json").read_text()
    modules = PREFIX / "node_modules"
    PREFIX.mkdir(parents=True, exist_ok=True)
    with open(PREFIX.parent / "node-interop.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = PREFIX / "installed-package.json"
        if marker.exists() and marker.read_text() == manifest and (modules / "mongodb").is_dir():
            return modules
        shutil.rmtree(modules, ignore_errors=True)
        (PREFIX / "package.json").write_text(manifest)
        # No lock file is written: it would record registry addresses; the version is pinned exactly.
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--omit=dev",
                               "--loglevel=error"], cwd=PREFIX, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "npm_config_update_notifier": "false"})
        if done.returncode != 0 or not (modules / "mongodb").is_dir():
            output = (done.stderr or done.stdout)[-800:]
            raise NodeUnavailableError(f"npm could not install the mongodb driver: {output}")
        marker.write_text(manifest)
    return modules


def service_argv(uri: str, mutex: str, node: str, log: Path, *, style: str = "readme", timeout_ms: int = 1000,
                 hold_ms: int = 100, seconds: float = 5, pause_ms: int = 15, release_only: bool = False) -> list[str]:
    argv = ["node", str(SOURCE / "service.js"), "--uri", uri, "--mutex", mutex, "--node", node, "--log", str(log),
            "--style", style, "--timeout", str(timeout_ms), "--hold", str(hold_ms), "--seconds", str(seconds),
            "--pause", str(pause_ms)]
    return argv + (["--release-only"] if release_only else [])
