"""The library's loggers: the standard ``logging``, under ``mutexctl.*``, silent unless the
application (or the CLI's ``-v``) configures them. The library never prints."""

from __future__ import annotations

import logging

# A library adds no output of its own: without this, Python prints warnings to stderr on its own.
logging.getLogger("mutexctl").addHandler(logging.NullHandler())


def logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
