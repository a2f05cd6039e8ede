"""Acknowledgements: waiting for them, and what a sender should conclude from them."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import HandlerFailedError, NodesSilentError
from ..flows import Flow, call, nap
from ..models import AckReport, Message


def wait_for_acks(message: Message, *, wait_s: float, poll_interval_s: float,
                  on_progress: Callable[[AckReport], None] | None = None) -> Flow[AckReport]:
    """Poll the acks until every expected node answered or ``wait_s`` passed; returns the last report."""
    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        report = AckReport(message, tuple((yield from call("acks", message.id))))
        now = time.monotonic()
        if report.complete or now >= deadline:
            return report
        if on_progress is not None:
            on_progress(report)
        yield from nap(min(delay, deadline - now))
        delay = min(poll_interval_s / 2, delay * 2)


def check(report: AckReport, *, point_to_status: bool = True) -> None:
    """Raise unless every expected node acked with status 0: HandlerFailedError when a handler
    failed (it wins over silence), NodesSilentError when some never answered."""
    hint = f"see 'mutexctl broadcast status {report.message.id}'" if point_to_status else None
    if report.failed:
        raise HandlerFailedError(summary(report), hint=hint)
    if report.silent:
        raise NodesSilentError(summary(report), hint=hint)


def summary(report: AckReport) -> str:
    parts = []
    if report.failed:
        parts.append("failed on " + ", ".join(f"{a.node} (status {a.status})" for a in report.failed))
    if report.silent:
        parts.append("no answer from " + ", ".join(report.silent))
    return f"message {report.message.id}: " + ("; ".join(parts) or "acked by every expected node")
