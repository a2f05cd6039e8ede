"""``metrics``: the store's leases in the Prometheus text format, for node_exporter's textfile
collector or a cron job — held or free, seconds left, holders and limits, forced releases, and
wait and hold time histograms from the lease history.

prometheus_client is imported here only: ``import mutexctl`` and every other command go without it.
The histograms and the forced-release count cover the history the store keeps (history_retention):
read them as distributions (histogram_quantile over the current values), not with rate()."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import LeaseEvent, Overview

if TYPE_CHECKING:
    from .service import Service

# Seconds: from a quick hand-over to a job that waited most of a day.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
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
        holders = GaugeMetricFamily("mutexctl_mutex_holders", "Live holders: 1 for an exclusive lease, else slots",
                                    labels=["mutex", "kind"])
        limit = GaugeMetricFamily("mutexctl_mutex_limit", "A semaphore's number of slots", labels=["mutex"])
        waiters = GaugeMetricFamily("mutexctl_mutex_waiters", "Processes queued for the mutex (acquire --wait)",
                                    labels=["mutex"])
        longest = GaugeMetricFamily("mutexctl_mutex_longest_wait_seconds",
                                    "How long its first waiter has waited so far", labels=["mutex"])
        fence = GaugeMetricFamily("mutexctl_mutex_fence", "The mutex's fencing token (grows with each acquire)",
                                  labels=["mutex"])
        for state in self.overview.states:
            name = state.mutex_id
            is_held = state.state == "held"
            held.add_metric([name], 1.0 if is_held else 0.0)
            fence.add_metric([name], float(state.fence))
            if is_held:
                remaining = min((s.remaining_ms for s in state.slots), default=state.remaining_ms)
                if remaining is not None:
                    left.add_metric([name], remaining / 1000)
            holders.add_metric([name, state.kind], float(len(state.slots) if state.slots else int(is_held)))
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
            if event.kind == "forced":
                forced[event.mutex_id] += 1
            if event.kind in WAITS and event.waited_ms is not None:
                waits[event.mutex_id].append(event.waited_ms / 1000)
            if event.kind in HOLDS and event.held_ms is not None:
                holds[event.mutex_id].append(event.held_ms / 1000)
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


def write_textfile(svc: Service, path: str) -> None:
    """Write atomically (a temporary file renamed over ``path``), as the textfile collector wants."""
    write_to_textfile(path, registry_of(svc))
