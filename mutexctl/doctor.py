"""``doctor``: the checks on-call runs first, each with a one-line verdict and the fix — the store
reachable and its round trip, this host's clock against the store's, topology and write concern,
schema version and indexes, leases held by processes that have exited here, listeners gone
silent, and which configuration file and node id are in use."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from .diagnose import clock_skew_ms, holder_alive
from .errors import ConfigError, MutexctlError
from .identity import host_name
from .models import CLI, human_ms

if TYPE_CHECKING:
    from .service import Service

OK, WARN, FAIL = "ok", "warn", "fail"
PINGS = 5  # round trips timed; the median is reported
SLOW_ROUND_TRIP_MS = 50.0  # a lease operation costs one; slower than this is worth a look
CLOCK_WARN_MS = 1000.0  # times printed by this host and by the store disagree by this much
SILENT_WINDOW_S = 24 * 3600.0  # listeners silent for longer are old news, not a warning


class Check(NamedTuple):
    name: str
    status: str  # OK, WARN or FAIL
    message: str
    fix: str | None = None
    data: dict[str, object] | None = None


def run(svc: Service) -> list[Check]:
    """Every check, in order; a store that cannot be reached fails the first and skips the rest."""
    checks = [_config(svc)]
    if getattr(svc.store, "missing", False):  # (a SQLite store read, not made: see Service's if_missing)
        return [*checks, Check("store", OK, "not made yet: nothing has used it (the first lock command or "
                                            "init-schema makes it); nothing else to check", data={"missing": True})]
    reachable = _reachable(svc)
    checks.append(reachable)
    if reachable.status == FAIL:
        return checks
    for check in (_clock, _topology, _schema, _dead_holders, _listeners):
        checks.append(_guarded(check, svc))
    return checks


def _guarded(check: Callable[[Service], Check], svc: Service) -> Check:
    try:
        return check(svc)
    except MutexctlError as exc:
        name = check.__name__.strip("_").replace("_", " ")
        return Check(name, FAIL, f"could not check: {exc.message}", exc.hint)


def _config(svc: Service) -> Check:
    settings = svc.settings
    where = f"file {settings.config_file}" if settings.config_file else "no file (flags, MUTEXCTL_* and defaults)"
    return Check("config", OK, f"{where}; node id {settings.node_id}; store {svc.store.url}",
                 data={"config_file": str(settings.config_file) if settings.config_file else None,
                       "node_id": settings.node_id, "store": svc.store.url})


def _reachable(svc: Service) -> Check:
    times = []
    try:
        for _ in range(PINGS):
            sent = time.perf_counter()
            svc.store.store_time()
            times.append((time.perf_counter() - sent) * 1000)
    except ConfigError as exc:  # reached, but not a store to use (another program's file, a damaged one)
        return Check("store", FAIL, f"unusable: {exc.message}", exc.hint, data={"error": exc.kind})
    except MutexctlError as exc:
        return Check("store", FAIL, f"unreachable: {exc.message}",
                     exc.hint or "check the URL, the network and that the server runs")
    median = statistics.median(times)
    data: dict[str, object] = {"round_trip_ms": round(median, 3), "round_trips": len(times)}
    text = f"reachable; round trip {median:.2f} ms (median of {len(times)})"
    if median > SLOW_ROUND_TRIP_MS:
        return Check("store", WARN, text + f", slower than {SLOW_ROUND_TRIP_MS:.0f} ms",
                     "every acquire, renewal and release costs one round trip: use a store nearer this host", data)
    return Check("store", OK, text, data=data)


def _clock(svc: Service) -> Check:
    if svc.store.clock == "host":  # an embedded store's clock is this host's own: nothing to compare
        return Check("clock", OK, "the store's clock is this host's (leases are judged on its boot clock, which "
                                  "setting the time does not move)", data={"offset_ms": None, "judged_by": "host"})
    sent = datetime.now(UTC)
    store_now = svc.store.store_time()
    received = datetime.now(UTC)
    skew = clock_skew_ms(store_now, sent, received)
    data: dict[str, object] = {"offset_ms": round(skew, 1), "judged_by": svc.store.clock}
    judged = "leases are judged on the store's clock" if svc.store.clock == "server" else \
        "leases are judged on this host's clock"
    text = f"this host is {abs(skew):.0f} ms {'behind' if skew > 0 else 'ahead of'} the store ({judged})"
    if abs(skew) > CLOCK_WARN_MS:
        return Check("clock", WARN, text, "run NTP (chrony, systemd-timesyncd) here or on the store's host: times "
                                          "this host prints will not match the store's", data)
    return Check("clock", OK, text, data=data)


def _topology(svc: Service) -> Check:
    report = svc.store.server_report()
    data: dict[str, object] = dict(report)
    engine = report.get("engine", "?")
    if not engine.startswith("MongoDB"):
        journal = report.get("journal", "?")
        text = f"{engine}, journal {journal}, one host"
        if journal.lower() != "wal":
            return Check("topology", WARN, text, "readers wait on writers outside WAL mode: run init-schema", data)
        return Check("topology", OK, text, data=data)
    topology, concern = report.get("topology", "?"), report.get("write_concern", "")
    text = f"{engine}, {topology}, write concern {concern or 'the server default'}"
    if topology.startswith("replica set") and "w=majority" not in concern:
        return Check("topology", WARN, text + ": a lease written with w:1 can be lost in a failover, and two "
                     "holders can then hold it", "add w=majority to the store URL (…/?w=majority)", data)
    if topology == "standalone":
        return Check("topology", OK, text + " (no failover: nothing written is rolled back)", data=data)
    return Check("topology", OK, text, data=data)


def _schema(svc: Service) -> Check:
    from .schema import SCHEMA_VERSION

    state = svc.store.schema_state()
    problems = svc.store.schema_problems()
    version = state.version if state is not None else None
    data: dict[str, object] = {"version": version, "tool_version": SCHEMA_VERSION,
                               "problems": [text for _, text in problems]}
    if problems:
        return Check("schema", WARN, f"schema {version}: " + "; ".join(text for _, text in problems),
                     "run mutexctl init-schema (it repairs what is missing)", data)
    if version is None:
        return Check("schema", WARN, "never initialized (locks work; broadcast, indexes and retention need it)",
                     "run mutexctl init-schema", data)
    if version > SCHEMA_VERSION:
        return Check("schema", FAIL, f"schema {version} is newer than this mutexctl's ({SCHEMA_VERSION})",
                     "upgrade mutexctl on this host", data)
    if version < SCHEMA_VERSION:
        return Check("schema", WARN, f"schema {version}, this mutexctl has {SCHEMA_VERSION}",
                     "run mutexctl init-schema", data)
    return Check("schema", OK, f"schema {version}, indexes in place", data=data)


def _dead_holders(svc: Service) -> Check:
    """Leases whose holder's process exited on this host while it should still run: a command's under
    ``acquire -- CMD`` or a service's. A token-mode lease (``acquire`` without a command) outlives the
    process that took it by design: counted, never a warning."""
    here = host_name()
    dead, tokens = [], 0
    for state in svc.store.overview(None, 0).states:
        if state.state != "held":
            continue
        for holder in [s.holder for s in state.slots] if state.slots else [state.holder]:
            if holder is not None and holder_alive(state._replace(holder=holder), here) is False:
                if holder.via == CLI and not holder.exec_mode:
                    tokens += 1
                else:
                    dead.append((state.mutex_id, holder.pid, state.remaining_ms))
    data: dict[str, object] = {"leases": [{"mutex": m, "pid": p, "remaining_ms": r} for m, p, r in dead],
                               "token_mode": tokens}
    if not dead:
        return Check("holders", OK, f"no lease held by an exited command or service on {here}"
                     + (f" ({tokens} token-mode lease(s), held on purpose)" if tokens else ""), data=data)
    shown = ", ".join(f"{m} (pid {p}, ends in {human_ms(r or 0)})" for m, p, r in dead[:5])
    more = f" and {len(dead) - 5} more" if len(dead) > 5 else ""
    return Check("holders", WARN, f"{len(dead)} lease(s) held by a command or service that exited on {here}: "
                                  f"{shown}{more}",
                 "they free themselves at their end; sooner: mutexctl release NAME --token FENCE, or "
                 "release NAME --force --reason '…'", data)


def _listeners(svc: Service) -> Check:
    from .intracom.listen import LIVE_WINDOW_S

    if svc.store.schema_state() is None:
        return Check("listeners", OK, "none: broadcast is not set up on this store (init-schema sets it up)")
    now, nodes = svc.nodes(None)
    ages = [(n, (now - n.last_seen).total_seconds()) for n in nodes]
    live = [n for n, age in ages if age <= LIVE_WINDOW_S]
    left = [n for n, age in ages if age > LIVE_WINDOW_S and n.left_at is not None]  # stopped by themselves: fine
    silent = [(n, age) for n, age in ages if LIVE_WINDOW_S < age <= SILENT_WINDOW_S and n.left_at is None]
    data: dict[str, object] = {"live": len(live), "left": len(left),
                               "silent": [{"node": n.node, "channel": n.channel, "seen_ago_s": round(age)}
                                          for n, age in silent]}
    if not silent:
        return Check("listeners", OK, f"{len(live)} live listener(s)" + (f", {len(left)} stopped by themselves"
                                                                       if left else "")
                     + ", none gone silent in the last day", data=data)
    shown = ", ".join(f"{n.node} on {n.channel} ({human_ms(age * 1000)} ago)" for n, age in silent[:5])
    return Check("listeners", WARN, f"{len(silent)} listener(s) not seen for over {LIVE_WINDOW_S:.0f}s: {shown}",
                 "restart mutexctl listen on those nodes; broadcasts do not wait for them meanwhile "
                 "(a node gone for good drops off after log_retention)", data)


def verdict(checks: list[Check]) -> bool:
    return all(c.status == OK for c in checks)


