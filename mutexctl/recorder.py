"""Writing the lease history off the hot path. A store that cannot put an event in the write of the
operation itself (MongoDB: acquire and release stay one findAndModify each) queues it in memory;
a recorder thread writes the queue in one insert at most FLUSH_S after the first event, and what is
queued is written when the process ends in order (the CLI's exit, ``Service.close()``, interpreter
exit), waiting at most EXIT_WAIT_S. What a crash (kill -9, power loss) can lose: the events of this
process's last FLUSH_S. SQLite records each event in the operation's own transaction, and queues
nothing."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .errors import StoreError
from .logs import logger

if TYPE_CHECKING:
    from .stores.protocols import LeaseStore

log = logger("mutexctl.history")

FLUSH_S = 0.1  # the most a crash can lose; a busy loop makes at most 10 inserts a second
EXIT_WAIT_S = 2.0
_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


class Recorder:
    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def poke(self) -> None:
        """After an operation: have what it queued written within FLUSH_S."""
        if not self.store.pending_events():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if not _recorders:
                    atexit.register(flush_all)
                _recorders.add(self)
                self._thread = threading.Thread(target=self._run, name="mutexctl-history", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        with self._flushing:
            try:
                self.store.flush_events()
            except StoreError as exc:
                log.info("lease history not written yet (%d events kept): %s", self.store.pending_events(),
                         exc.message)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(FLUSH_S)  # gather what follows: one insert for a burst
            self.flush()


def flush_all(wait_s: float = EXIT_WAIT_S) -> None:
    """Write every recorder's queue now, giving up after ``wait_s`` (a store that does not answer)."""
    pending = [r for r in list(_recorders) if r.store.pending_events()]
    if not pending:
        return
    def write() -> None:
        for recorder in pending:
            recorder.flush()

    worker = threading.Thread(target=write, name="mutexctl-history-exit", daemon=True)
    worker.start()
    worker.join(wait_s)
