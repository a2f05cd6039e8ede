"""Force-release a mutex on MongoDB and die by SIGKILL between the release write and the history copy.

Usage: force_then_die.py STORE_URL NAME REASON
"""

import os
import signal
import sys

from mutexctl import Service, Settings
from mutexctl.stores.mongodb.leases import MongoLeases


def die(self: object, docs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


MongoLeases._copy_forced = die  # type: ignore[method-assign]
store, name, reason = sys.argv[1:4]
Service(Settings(node_id="ops", store=store)).force_release(name, reason=reason)
