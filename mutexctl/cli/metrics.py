"""``metrics``: the Prometheus text format on stdout, or written atomically to a file for
node_exporter's textfile collector (``--textfile /var/lib/node_exporter/textfile/mutexctl.prom``)."""

# (no "from __future__ import annotations": typer reads these signatures at every start)

from typing import Annotated, Optional

import typer

from . import exit_codes
from .common import APP_SETTINGS, ConfigOpt, DebugOpt, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, invocation

METRICS = typer.Typer(**APP_SETTINGS)


@METRICS.command()
def metrics(
    ctx: typer.Context,
    textfile: Annotated[Optional[str], typer.Option(
        "--textfile", metavar="PATH", help="Write to PATH (atomically: a temporary file renamed over it) instead "
                                           "of stdout; name it *.prom for node_exporter.", show_default=False)] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Print the leases as Prometheus metrics: held, time left, holders, limits, forced releases, wait/hold times.

    Families: mutexctl_mutex_held, mutexctl_mutex_seconds_left, mutexctl_mutex_holders{kind},
    mutexctl_mutex_limit, mutexctl_mutex_waiters, mutexctl_mutex_longest_wait_seconds,
    mutexctl_mutex_fence, mutexctl_forced_releases_total, and the histograms
    mutexctl_wait_seconds and mutexctl_hold_seconds (label mutex). The forced-release count and the
    histograms cover the history the store keeps (history_retention): use histogram_quantile on
    them, not rate(). Two reads of the store per run.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    from .. import metrics as prometheus

    if textfile is not None:
        prometheus.check_textfile(textfile)  # before the store is opened

    with inv.service(reading=True) as svc:
        if textfile is not None:
            prometheus.write_textfile(svc, textfile)
        elif inv.as_json:
            families = prometheus.documents(svc)
        else:
            text = prometheus.exposition(svc)
        url = svc.store.url
    if textfile is None and inv.as_json:
        inv.out.doc({"ok": True, "store": url, "metrics": families})
    elif textfile is None:
        inv.out.data(text.rstrip("\n"))
    elif inv.as_json:
        inv.out.doc({"ok": True, "textfile": textfile})
    return exit_codes.SUCCESS
