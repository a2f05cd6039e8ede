"""Run init-schema and SIGKILL ourselves right after step K is recorded.

Usage: init_then_die.py STORE_URL K LEASE_TIMEOUT
"""

import os
import signal
import sys

from mutexctl import Service, Settings

store, stop_after, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def step_done(number: int, _text: str) -> None:
    if number == stop_after:
        os.kill(os.getpid(), signal.SIGKILL)


Service(Settings(node_id="doomed", store=store)).init_schema(timeout=timeout, on_step=step_done)
