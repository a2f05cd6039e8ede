"""Force-release a mutex on MongoDB and die by SIGKILL between the release write and the history copy.

Usage: force_then_die.py STORE_URL NAME REASON
"""

import os
import signal
import sys
from collections.abc import Iterator

from mutexctl import Service, Settings
from mutexctl.stores.mongodb import leases


def die(docs: object) -> Iterator[None]:
    """In place of the operation that copies the records into the history: the process dies first."""
    os.kill(os.getpid(), signal.SIGKILL)
    yield


leases.copy_forced = die  # type: ignore[assignment]
store, name, reason = sys.argv[1:4]
Service(Settings(node_id="ops", store=store)).force_release(name, reason=reason)
