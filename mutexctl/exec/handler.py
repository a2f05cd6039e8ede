"""A short-lived command (a broadcast handler) run to its end in a process group of its own."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence


def run_handler(argv: Sequence[str], stdin: bytes, env: Mapping[str, str]) -> int:
    """Run ``argv`` with ``stdin``; its status as a shell gives it (126/127 if it cannot start).

    It gets a process group of its own, so a Ctrl-C or SIGTERM meant for the listener lets the
    running handler finish (the listener then stops) instead of killing it midway.
    """
    try:
        done = subprocess.run(list(argv), input=stdin, env=dict(env), process_group=0, check=False)
    except FileNotFoundError:
        return 127
    except OSError:
        return 126
    return 128 - done.returncode if done.returncode < 0 else done.returncode
