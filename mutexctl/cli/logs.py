"""``-v``: the library's log lines (the standard ``logging`` under ``mutexctl.*``) on stderr, masked."""

from __future__ import annotations

import logging
import sys

from ..redact import mask_url


class _Masked(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def show_logs(verbose: int) -> None:
    """-v shows info and warnings, -vv debug as well; once per process."""
    root = logging.getLogger("mutexctl")
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    if not any(getattr(h, "_mutexctl", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Masked("mutexctl: %(levelname)s %(name)s: %(message)s"))
        handler._mutexctl = True  # type: ignore[attr-defined]
        root.addHandler(handler)
