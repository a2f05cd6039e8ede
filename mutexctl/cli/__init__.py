"""The command-line skin over the library: the only package that imports typer and rich."""

from __future__ import annotations

import contextlib
import os
import sys


def main(argv: list[str] | None = None) -> None:
    from .app import run

    code = run(sys.argv[1:] if argv is None else argv)
    recorder = sys.modules.get("mutexctl.recorder")
    if recorder is not None:  # the lease history this run queued (MongoDB), written before leaving
        recorder.flush_all()
    # Nothing is left to do, and the interpreter's own teardown costs: pymongo's exit hook joins its
    # monitor threads, which sleep in 0.5 s steps (a stall on every run), and tearing down every
    # module takes milliseconds. Every write has been committed (SQLite's are in its WAL, durable);
    # the connections close with the process. Only the output streams need flushing.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nobody is left to tell
            stream.flush()
    os._exit(code)
