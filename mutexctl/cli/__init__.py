"""The command-line skin over the library: the only package that imports typer and rich."""

from __future__ import annotations

import contextlib
import os
import sys


def main(argv: list[str] | None = None) -> None:
    from .app import run

    code = run(sys.argv[1:] if argv is None else argv)
    if "pymongo" in sys.modules:
        # The client is closed, but pymongo's exit hook still joins its monitor threads, which sleep in
        # 0.5 s steps: a short-lived CLI would stall that long on every run. Nothing is left to do.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nobody is left to tell
                stream.flush()
        os._exit(code)
    sys.exit(code)
