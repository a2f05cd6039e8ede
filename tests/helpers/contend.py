"""One contending process: loop acquire -> non-atomic read-modify-write of a counter file -> release.

Usage: contend.py STORE_URL NAME CYCLES COUNTER_FILE locked|unlocked
Prints the number of increments it made. The gap between read and write invites lost updates.
"""

import sys
import time
from pathlib import Path

from mutexctl import Service, Settings


def bump(counter: Path) -> None:
    value = int(counter.read_text() or "0")
    time.sleep(0.0005)
    counter.write_text(str(value + 1))


def main() -> None:
    store, name, cycles, counter, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
    done = 0
    with Service(Settings(node_id=f"proc-{__import__('os').getpid()}", store=store)) as svc:
        for _ in range(cycles):
            if mode == "locked":
                lease = svc.acquire(name, timeout="10s", wait="inf")
                bump(counter)
                svc.release(name, token=lease.fence)
            else:
                bump(counter)
            done += 1
    print(done)


main()
