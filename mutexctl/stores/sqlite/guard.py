"""The host guard: a lease's presence on this host, kept outside the store file.

The file is the store, and a file can be removed, moved or replaced under a running lease (an
on-call's ``rm`` of a "stale lock file", a temp cleaner, a restore). The holder's connection goes on
with the file it opened; the next process makes a new, empty store at the path and would take the
mutex beside it, with the same fence. So each holding process also binds two Linux abstract
sockets, names that no file operation can remove and that vanish with the process:

- the guard, ``mutexctl-guard/<key>`` (key: the store's path and the mutex), one per mutex: an
  acquirer that the store granted binds it, in one system call; bound by someone else, it looks
  further. An exclusive holder binds it always, a slot holder when no one has it.
- the beacon, ``mutexctl-lease/<key>/<file>/<pid>/<fence>/<end>/<kind>``: which file the lease
  is in (device and inode of the database and its -wal and -shm), the holder's pid and fence, and
  when its lease ends on the boot clock. Read from ``/proc/net/unix`` only when the guard is taken.

A taker whose guard is held by a live lease in *another* file (the store was replaced) does not
enter: it undoes its take, raising the fence there past the holder's so fences never go back. A
holder in the same file is the store's business (an expired lease, a forced release: the store
already decided). The holder itself notices the replacement at its next renewal and stops.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import NamedTuple

from ...errors import StoreUnavailableError

GUARD = "mutexctl-guard/"
BEACON = "mutexctl-lease/"
EXCLUSIVE_KIND, SLOT_KIND = "x", "s"
_PROC = Path("/proc/net/unix")
_AVAILABLE = hasattr(socket, "AF_UNIX") and _PROC.exists()  # (abstract sockets are Linux's)


def boot_now_ms() -> int:
    """Every process's same clock (CLOCK_BOOTTIME), whatever clock a store was given."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000


class Beacon(NamedTuple):
    """Another process's lease on this host, as its beacon tells it."""

    file: str
    pid: int
    fence: int
    ends_ms: int  # on boot_now_ms's clock
    kind: str


class HostGuard:
    """The guards and beacons of the leases this process holds in one store file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path.absolute())
        self._held: dict[tuple[str, int], tuple[socket.socket | None, socket.socket]] = {}
        self._lock = threading.Lock()  # a renewal thread refreshes while the caller takes and releases

    def key(self, mutex_id: str) -> str:
        return hashlib.sha256(f"{self.path}\0{mutex_id}".encode()).hexdigest()[:24]

    def claim(self, mutex_id: str, fence: int, timeout_ms: int, file: str, *, slot: bool) -> Beacon | None:
        """Mark this lease held on this host; a live lease in another file of this path: its beacon."""
        if not _AVAILABLE:
            return None
        with self._lock:
            return self._claim(mutex_id, fence, timeout_ms, file, slot=slot)

    def _claim(self, mutex_id: str, fence: int, timeout_ms: int, file: str, *, slot: bool) -> Beacon | None:
        key = self.key(mutex_id)
        guard = _bind(GUARD + key)
        if guard is None:
            conflict = _conflict(key, file, slot=slot)
            if conflict is not None:
                return conflict
        kind = SLOT_KIND if slot else EXCLUSIVE_KIND
        try:
            beacon = _bind(_beacon_name(key, file, fence, boot_now_ms() + timeout_ms, kind))
        except BaseException:
            if guard is not None:
                guard.close()
            raise
        if beacon is None:  # (only a beacon of ours could have this name)
            if guard is not None:
                guard.close()
            return None
        self._drop(mutex_id, fence)
        self._held[(mutex_id, fence)] = (guard, beacon)
        return None

    def refresh(self, mutex_id: str, fence: int, timeout_ms: int, file: str, *, slot: bool) -> None:
        """After a renewal: the beacon tells the lease's new end."""
        with self._lock:
            self._refresh(mutex_id, fence, timeout_ms, file, slot=slot)

    def _refresh(self, mutex_id: str, fence: int, timeout_ms: int, file: str, *, slot: bool) -> None:
        held = self._held.get((mutex_id, fence))
        if held is None:
            return
        guard, old = held
        if guard is None:  # a slot holder whose guard-holding peer left takes the guard over
            guard = _bind(GUARD + self.key(mutex_id))
        kind = SLOT_KIND if slot else EXCLUSIVE_KIND
        new = _bind(_beacon_name(self.key(mutex_id), file, fence, boot_now_ms() + timeout_ms, kind))
        if new is not None:
            old.close()
        self._held[(mutex_id, fence)] = (guard, new or old)

    def drop(self, mutex_id: str, fence: int | None) -> None:
        """Before a release: the guard goes first, so that the next taker of the same file can bind it."""
        with self._lock:
            self._drop(mutex_id, fence)

    def _drop(self, mutex_id: str, fence: int | None) -> None:
        for held in [k for k in self._held if k[0] == mutex_id and fence in (None, k[1])]:
            guard, beacon = self._held.pop(held)
            if guard is not None:
                guard.close()
            beacon.close()

    def fds(self, mutex_id: str, fence: int) -> list[int]:
        """The guard's descriptor, for a watcher to hold as long as the command it watches may run."""
        guard = self._held.get((mutex_id, fence), (None, None))[0]
        return [guard.fileno()] if guard is not None else []


def _beacon_name(key: str, file: str, fence: int, ends_ms: int, kind: str) -> str:
    return f"{BEACON}{key}/{file}/{os.getpid()}/{fence}/{ends_ms}/{kind}"


def _bind(name: str) -> socket.socket | None:
    """A datagram socket bound to the abstract ``name``; None if another socket has it."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):  # (the take is rolled back: nothing is held)
            raise StoreUnavailableError(
                f"cannot mark a lease held on this host: {os.strerror(exc.errno)} (each SQLite lease a process "
                "holds keeps two descriptors)", hint="raise the open-file limit (ulimit -n), or hold fewer "
                "leases in one process") from None
        raise
    try:
        sock.bind(b"\0" + name.encode())
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return sock


def _conflict(key: str, file: str, *, slot: bool) -> Beacon | None:
    """The first live lease of this key in another file that this take cannot sit beside."""
    found = beacons(key)
    if not found:  # the guard without a beacon: its holder is between the two binds, or a watcher
        return Beacon("?", 0, 0, 0, "?")  # outlives a killed holder for the moment it kills the command
    now = boot_now_ms()
    for beacon in found:
        if beacon.file == file or beacon.ends_ms <= now:
            continue  # the same file (the store decided), or a lease over even if its holder is frozen
        if slot and beacon.kind == SLOT_KIND:
            continue  # slots sit beside slots
        return beacon
    return None


def beacons(key: str) -> list[Beacon]:
    prefix = f"@{BEACON}{key}/"
    found = []
    with contextlib.suppress(OSError):
        for line in _PROC.read_text().splitlines():
            name = line.rsplit(" ", 1)[-1]
            if name.startswith(prefix):
                parts = name[len(prefix):].split("/")
                with contextlib.suppress(ValueError):
                    found.append(Beacon(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), parts[4]))
    return found
