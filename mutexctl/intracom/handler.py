"""A listener's handler that runs a command per message, the payload on its stdin."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..exec.handler import run_handler
from ..models import Message


def command_handler(argv: Sequence[str]) -> Callable[[Message], int]:
    """A handler running ``argv`` with MUTEXCTL_MESSAGE_ID, _ACTION, _SENDER and _CHANNEL set; its
    exit status is the ack's."""
    command = list(argv)

    def handle(message: Message) -> int:
        env = dict(os.environ, MUTEXCTL_MESSAGE_ID=message.id, MUTEXCTL_ACTION=message.action,
                   MUTEXCTL_SENDER=message.sender, MUTEXCTL_CHANNEL=message.channel)
        return run_handler(command, message.payload.encode("utf-8"), env)

    return handle
