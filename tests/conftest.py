"""Shared fixtures: one contract suite runs against every store; the CLI runs as a real process.

Where a test for X goes:
- the store protocol, against every store object directly (a LeaseStore method, a SQL statement or
  pipeline, a row or document read back): ``stores/test_protocol.py``, ``stores/test_slots.py``;
  MongoDB alone (the shared document other services write, the server's outages, restarts, auth):
  ``stores/test_mongodb_*.py``;
- the library as services use it (Service, Leases, lock(), run_once, the waiters' queue), on every
  store: ``library/`` — ``test_leases.py`` holds the lease rules (fences, expiry, take-over, forced
  releases) through the Service;
- the CLI as people and scripts run it (a real process, exit statuses, stdout/stderr, --json):
  ``cli/``, one file per command or concern (``test_bad_input.py`` for refused input of any size,
  ``test_trust.py`` for secrets, read-only and full stores, ``test_faults.py`` for what happens
  outside the lease);
- another language's client sharing the store: ``interop/``;
- a script a test runs as a process, or a launcher (MongoDB wire server, Node.js): ``helpers/``;
- the package's shape (layers, module sizes, picklable errors, no flag in a library error):
  ``test_architecture.py``;
- a speed or memory target: not a test, a script in ``benchmarks/`` that prints ratios.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from mutexctl import Service, Settings
from mutexctl.stores import open_store
from mutexctl.stores.protocols import Store
from mutexctl.stores.sqlite import SQLiteStore

from .helpers.mongo_server import MongoServer, ServerUnavailableError, with_database

STORES = ["sqlite", "mongodb"]


def _compile_package() -> None:
    """Byte-compile mutexctl once per run: the suite starts the CLI hundreds of times, and where
    PYTHONDONTWRITEBYTECODE is set (as on some CI machines) each start would compile every module
    again (about half of a start's time)."""
    import compileall

    import mutexctl

    compileall.compile_dir(str(Path(mutexctl.__file__).parent), quiet=1)


_compile_package()
HELPERS = Path(__file__).parent / "helpers"
# Room a busy 2-core machine needs on top of what a behaviour takes (a process start, a poll, a
# context switch behind two CPU hogs): deadlines are the behaviour's own bound plus this, never a bare 1 s.
BUSY_S = 3.0


def mutexctl_argv() -> list[str]:
    """The installed entry point beside this interpreter (what users run), else ``python -m``."""
    script = Path(sys.executable).parent / "mutexctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mutexctl"]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def mongodb_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("MUTEXCTL_REQUIRE_MONGODB") == "1"


@pytest.fixture(scope="session")
def mongo_base_uri() -> Iterator[str]:
    """A real MongoDB from MUTEXCTL_TEST_MONGODB_URI, else a mongoeco wire server for the session.

    If it cannot start, the MongoDB tests fail in CI (or with MUTEXCTL_REQUIRE_MONGODB=1) and are
    skipped, with the reason, elsewhere.
    """
    given = os.environ.get("MUTEXCTL_TEST_MONGODB_URI")
    if given:
        yield given
        return
    server = MongoServer()
    try:
        server.start()
    except ServerUnavailableError as exc:
        if mongodb_required():
            pytest.fail(f"MongoDB tests could not run: {exc}", pytrace=False)
        pytest.skip(f"MongoDB tests need a server: {exc}")
    yield server.uri
    server.stop()


_databases = itertools.count()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store per test: an SQLite file, or a MongoDB database of its own."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'store' / 'mutexctl.db'}"
        return
    base = request.getfixturevalue("mongo_base_uri")
    database = f"t{os.getpid()}_{next(_databases)}"
    yield with_database(base, database)
    if os.environ.get("MUTEXCTL_TEST_MONGODB_URI"):  # keep a real server tidy; mongoeco dies with the session
        import pymongo

        with pymongo.MongoClient(base, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)


class StoreClock:
    """The clock a store judges leases on, as a test moves it.

    SQLite's is injected (the boot clock plus an offset that ``advance`` raises), so an expiry test
    moves time instead of sleeping. MongoDB's is the server's ``$$NOW``, which no client can move:
    ``advance`` waits (polling, with a deadline) until the server's clock has passed the target.
    """

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.injected = store_url.startswith("sqlite")
        self._offset_ns = 0

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) + self._offset_ns

    def open(self, settings: Settings) -> Store:
        """The store of ``settings`` on this clock."""
        if self.injected:
            return SQLiteStore(Path(settings.store.removeprefix("sqlite://")), settings.store, clock_ns=self.now_ns)
        return open_store(settings)

    def advance(self, milliseconds: float, store: Store) -> None:
        if self.injected:
            self._offset_ns += int(milliseconds * 1_000_000)
            return
        target = store.overview(None, 0).store_now + timedelta(milliseconds=milliseconds)
        wait_until(lambda: store.overview(None, 0).store_now >= target, timeout=milliseconds / 1000 + 10)


@pytest.fixture
def clock(store_url: str) -> StoreClock:
    return StoreClock(store_url)


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(node_id="node-a", store=store_url)


@pytest.fixture
def service(settings: Settings, clock: StoreClock) -> Iterator[Service]:
    with Service(settings, store=clock.open(settings)) as svc:
        yield svc


@pytest.fixture
def other(settings: Settings, clock: StoreClock) -> Iterator[Service]:
    """A second node on the same store (and clock)."""
    second = Settings(node_id="node-b", store=settings.store)
    with Service(second, store=clock.open(second)) as svc:
        yield svc


class Cli:
    """Runs ``mutexctl`` as a separate process against the test's store, with a clean environment."""

    def __init__(self, store_url: str, home: Path) -> None:
        self.store_url = store_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MUTEXCTL_")}
        self.env.update(MUTEXCTL_STORE=store_url, MUTEXCTL_NODE_ID="cli-node", HOME=str(home),
                        XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".state"), NO_COLOR="1")
        self.cwd = home

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*mutexctl_argv(), *args], env={**self.env, **(env or {})}, cwd=self.cwd,
                              capture_output=True, text=True, timeout=timeout, input=input)

    def popen(self, *args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
        """Start mutexctl as a shell's foreground job would: with SIGINT and SIGQUIT not ignored.

        (A job started with ``&`` by a non-interactive shell, as CI runners do, inherits both
        ignored, and so would the command mutexctl runs.)
        """
        return subprocess.Popen([*mutexctl_argv(), *args], env={**self.env, **(env or {})}, cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_signals, **kw)  # type: ignore[call-overload]


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.fixture
def cli(store_url: str, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(store_url, home)


def store_rows(store_url: str) -> list[object]:
    """Everything a store holds, to prove a failed command changed nothing: read until two reads
    150 ms apart agree (a test's own Service writes its lease history within 100 ms, off the hot path)."""
    rows = _rows(store_url)
    for _ in range(20):
        time.sleep(0.15)
        again = _rows(store_url)
        if again == rows:
            return rows
        rows = again
    return rows


def _rows(store_url: str) -> list[object]:
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite://"))
        if not path.exists():
            return []
        with sqlite3.connect(path) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                               "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            return [(table, *r) for table in tables for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    import pymongo

    with pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000) as client:
        db = client.get_default_database()
        return [(name, doc) for name in sorted(db.list_collection_names()) for doc in db[name].find().sort("_id")]


def start_job(cli: Cli, tmp_path: Path, *acquire_args: str,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``mutexctl acquire job ARGS -- sh -c 'sleep 100 & …; wait'``; returns it and the grandchild's pid."""
    pidfile = tmp_path / "grandchild"
    proc = cli.popen("acquire", "job", *acquire_args, "--", "sh", "-c", f"sleep 100 & echo $! > {pidfile}; wait",
                     env=env)
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20))  # type: ignore[arg-type]
    return proc, grandchild


def have(program: str) -> bool:
    return shutil.which(program) is not None
