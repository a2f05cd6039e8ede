"""A critical section for contention tests: append "enter WHO NS", sleep, append "exit WHO NS" to LOG
(CLOCK_MONOTONIC nanoseconds, one O_APPEND write per line, so processes never interleave a line).

Usage: section.py LOG WHO HOLD_MS [EXIT_STATUS]
"""

import os
import sys
import time


def note(log: str, what: str, who: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {who} {time.clock_gettime_ns(time.CLOCK_MONOTONIC)}\n".encode())
    finally:
        os.close(fd)


log, who, hold_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
note(log, "enter", who)
time.sleep(hold_ms / 1000)
note(log, "exit", who)
sys.exit(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
