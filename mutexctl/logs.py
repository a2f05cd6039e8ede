"""The library's loggers: the standard ``logging``, under ``mutexctl.*``, silent unless the
application (or the CLI's ``-v``) configures it. The library never prints.

``logging`` itself is imported only once something else has imported it: a process that never
configured logging has nowhere for a line to go, and a CLI run is spared the import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging


class LazyLogger:
    """``logging.getLogger(name)``, fetched at the first line logged while ``logging`` is loaded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def _get(self) -> logging.Logger | None:
        if self._logger is None and "logging" in sys.modules:
            import logging

            root = logging.getLogger("mutexctl")
            if not root.handlers:  # a library adds no output of its own (no "last resort" printing)
                root.addHandler(logging.NullHandler())
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, message: str, *args: Any) -> None:
        if (logger := self._get()) is not None:
            logger.debug(message, *args)

    def info(self, message: str, *args: Any) -> None:
        if (logger := self._get()) is not None:
            logger.info(message, *args)

    def warning(self, message: str, *args: Any) -> None:
        if (logger := self._get()) is not None:
            logger.warning(message, *args)

    def exception(self, message: str, *args: Any) -> None:
        if (logger := self._get()) is not None:
            logger.exception(message, *args)


def logger(name: str) -> LazyLogger:
    return LazyLogger(name)
