"""A listener's handler that runs a command per message, the payload on its stdin."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..exec.handler import TIMED_OUT, HandlerRun, run_handler
from ..models import Message

DEFAULT_HANDLER_TIMEOUT_S = 600.0  # 10m: a handler that runs longer is stopped and acked as failed

__all__ = ["DEFAULT_HANDLER_TIMEOUT_S", "TIMED_OUT", "CommandHandler"]


class CommandHandler:
    """Runs ``argv`` per message with MUTEXCTL_MESSAGE_ID, _ACTION, _SENDER and _CHANNEL set, for at
    most ``limit_s`` seconds (None: no limit); its exit status is the ack's, TIMED_OUT (124) when it
    was stopped at the limit. ``last`` tells how the latest run ended."""

    def __init__(self, argv: Sequence[str], *, limit_s: float | None = DEFAULT_HANDLER_TIMEOUT_S) -> None:
        self.argv = list(argv)
        self.limit_s = limit_s
        self.last: HandlerRun | None = None

    def __call__(self, message: Message) -> int:
        env = dict(os.environ, MUTEXCTL_MESSAGE_ID=message.id, MUTEXCTL_ACTION=message.action,
                   MUTEXCTL_SENDER=message.sender, MUTEXCTL_CHANNEL=message.channel)
        self.last = run_handler(self.argv, message.payload.encode("utf-8"), env, limit_s=self.limit_s)
        return self.last.status
