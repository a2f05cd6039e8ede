"""Take leases one after another under a small open-file limit until the store refuses one; print
how many were taken and the error (a test helper: a process of its own, so the limit stays here)."""

from __future__ import annotations

import os
import resource
import sys

from mutexctl import MutexctlError, Service, Settings

resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
with Service(Settings(node_id="many", store=sys.argv[1]), via="cli") as svc:
    for i in range(10_000):
        try:
            svc.try_acquire(f"m{i}", timeout="1h")
        except MutexctlError as exc:
            print(i, type(exc).__name__, exc.message, exc.hint, sep="\n", flush=True)
            os._exit(0)  # (no descriptor is left to close the Service with; the leases outlive us)
