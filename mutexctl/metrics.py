"""``metrics``: the store's leases in the Prometheus text format, for node_exporter's textfile
collector or a cron job — held or free, seconds left, holders and limits, forced releases, and
wait and hold time histograms from the lease history.

prometheus_client is imported here only: ``import mutexctl`` and every other command go without it.
The histograms and the forced-release count cover the history the store keeps (history_retention):
read them as distributions (histogram_quantile over the current values), not with rate()."""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import stat
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import ConfigError, OutputError
from .models import EXCLUSIVE, SEMAPHORE, SHARED, LeaseEvent, Overview
from .redact import printable

if TYPE_CHECKING:
    from .service import Service

# Seconds: from a quick hand-over to a job that waited most of a day.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
KINDS = (EXCLUSIVE, SHARED, SEMAPHORE)
MAX_EVENTS = 100_000  # the newest events the histograms are made of
WAITS, HOLDS = ("acquire", "takeover"), ("release", "release-late", "forced")


class LeaseCollector(Collector):
    """The metric families of one reading of the store (overview and history, read once)."""

    def __init__(self, overview: Overview, history: Sequence[LeaseEvent], store: str, took_s: float) -> None:
        self.overview, self.history, self.store, self.took_s = overview, history, store, took_s

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily("mutexctl_mutex_held", "1 while the mutex (any slot of it) is held, else 0",
                                 labels=["mutex"])
        left = GaugeMetricFamily("mutexctl_mutex_seconds_left",
                                 "Seconds until the lease (the first slot to end) expires, on the store's clock",
                                 labels=["mutex"])
        holders = GaugeMetricFamily("mutexctl_mutex_holders", "Live holders by kind of lease: 1 for an exclusive "
                                    "lease, else slots held; every kind is given, 0 where not held so",
                                    labels=["mutex", "kind"])
        limit = GaugeMetricFamily("mutexctl_mutex_limit", "A semaphore's number of slots", labels=["mutex"])
        waiters = GaugeMetricFamily("mutexctl_mutex_waiters", "Processes queued for the mutex (acquire --wait)",
                                    labels=["mutex"])
        longest = GaugeMetricFamily("mutexctl_mutex_longest_wait_seconds",
                                    "How long its first waiter has waited so far", labels=["mutex"])
        fence = GaugeMetricFamily("mutexctl_mutex_fence", "The mutex's fencing token (grows with each acquire)",
                                  labels=["mutex"])
        for state in self.overview.states:
            name = printable(state.mutex_id)  # (a foreign document's name may carry terminal escapes)
            is_held = state.state == "held"
            held.add_metric([name], 1.0 if is_held else 0.0)
            fence.add_metric([name], float(state.fence))
            if is_held:
                remaining = min((s.remaining_ms for s in state.slots), default=state.remaining_ms)
                if remaining is not None:
                    left.add_metric([name], remaining / 1000)
            count = float(len(state.slots) if state.slots else int(is_held))
            for kind in KINDS:  # a series per kind, always: a label that flipped would churn Prometheus series
                holders.add_metric([name, kind], count if kind == state.kind and is_held else 0.0)
            if state.limit is not None:
                limit.add_metric([name], float(state.limit))
            waiters.add_metric([name], float(len(state.waiters)))
            if state.waiters:
                longest.add_metric([name], max(w.waited_ms for w in state.waiters) / 1000)
        yield from (held, left, holders, limit, waiters, longest, fence)
        yield from self._from_history()
        up = GaugeMetricFamily("mutexctl_store_read_seconds", "How long reading the store took", labels=["store"])
        up.add_metric([self.store], self.took_s)
        yield up

    def _from_history(self) -> Iterator[Metric]:
        forced: dict[str, int] = defaultdict(int)
        waits: dict[str, list[float]] = defaultdict(list)
        holds: dict[str, list[float]] = defaultdict(list)
        for event in self.history:
            name = printable(event.mutex_id)
            if event.kind == "forced":
                forced[name] += 1
            if event.kind in WAITS and event.waited_ms is not None:
                waits[name].append(event.waited_ms / 1000)
            if event.kind in HOLDS and event.held_ms is not None:
                holds[name].append(event.held_ms / 1000)
        counter = CounterMetricFamily("mutexctl_forced_releases", "Forced releases in the kept lease history",
                                      labels=["mutex"])
        for name, count in sorted(forced.items()):
            counter.add_metric([name], float(count))
        yield counter
        yield _histogram("mutexctl_wait_seconds", "How long acquirers waited, from the kept lease history", waits)
        yield _histogram("mutexctl_hold_seconds", "How long leases were held, from the kept lease history", holds)


def _histogram(name: str, documentation: str, values: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["mutex"])
    for mutex, seen in sorted(values.items()):
        seen.sort()
        buckets = [(_le(bound), float(bisect.bisect_right(seen, bound))) for bound in BUCKETS]
        buckets.append(("+Inf", float(len(seen))))
        family.add_metric([mutex], buckets, sum(seen))
    return family


def _le(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


def registry_of(svc: Service) -> CollectorRegistry:
    """One reading of the store (two: its mutexes, then its history) as a registry."""
    started = time.perf_counter()
    overview = svc.store.overview(None, 0)
    history = svc.store.history(None, limit=MAX_EVENTS)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LeaseCollector(overview, history, svc.store.url, time.perf_counter() - started))
    return registry


def exposition(svc: Service) -> str:
    return generate_latest(registry_of(svc)).decode()


def documents(svc: Service) -> list[dict[str, object]]:
    """The same reading as the exposition, as JSON-ready families: name, type, help and samples
    (each with its own name, labels and value: a histogram's buckets, count and sum are samples)."""
    return [{"name": family.name, "type": family.type, "help": family.documentation,
             "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples]}
            for family in registry_of(svc).collect()]


def check_textfile(path: str) -> None:
    """Refuse a target that is not a regular file (or a new one), before anything is read or written:
    renaming over a device node or a symlink (``/dev/null``, ``/dev/stdout``) would replace it, and a
    root cron job would damage the system."""
    if not path:
        raise ConfigError("the metrics file name is empty",
                          hint="name a file, e.g. /var/lib/node_exporter/textfile/mutexctl.prom")
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:  # a name over 255 bytes, a directory we may not search, a loop
        raise ConfigError(f"cannot use {printable(path)!r} as the metrics file: {exc.strerror}",
                          hint="name a regular file in an existing directory this user may write to") from exc
    if found is not None and not stat.S_ISREG(found.st_mode):
        kind = "a symlink" if stat.S_ISLNK(found.st_mode) else "a directory" if stat.S_ISDIR(found.st_mode) \
            else "a device or special file"
        raise ConfigError(f"will not replace {printable(path)!r} with the metrics: it is {kind}, not a regular file",
                          hint="name a regular file (or a new one); only regular files are replaced")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the metrics file {printable(path)!r}: its directory does not exist or "
                          "this user may not write to it", hint="name a file in an existing directory this user may "
                                                                "write to")


def write_textfile(svc: Service, path: str) -> None:
    """Write atomically (a temporary file beside ``path``, renamed over it), as the textfile collector
    wants; on a full disk or an I/O error the old file stays and the temporary one goes."""
    check_textfile(path)
    text = generate_latest(registry_of(svc))
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(text)
        finally:
            check_textfile(path)  # (what was checked may have changed while the store was read)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"cannot use {printable(path)!r} as the metrics file: {exc.strerror}",
                              hint="use a shorter file name") from exc
        raise OutputError(f"cannot write the metrics file {printable(path)!r}: {exc.strerror or exc}",
                          hint="free space on its file system, or name a file elsewhere") from exc
