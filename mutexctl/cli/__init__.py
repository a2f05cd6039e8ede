"""The command-line skin over the library: the only package that imports typer and rich."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from .app import run

    sys.exit(run(sys.argv[1:] if argv is None else argv))
