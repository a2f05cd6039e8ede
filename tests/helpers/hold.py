"""Take a lease and hold it until killed. Usage: hold.py STORE_URL NAME TIMEOUT NODE

Prints "<monotonic-before-acquire> <fence>" once the lease is held.
"""

import sys
import time

from mutexctl import Service, Settings

store, name, timeout, node = sys.argv[1:5]
svc = Service(Settings(node_id=node, store=store))
before = time.monotonic()
lease = svc.try_acquire(name, timeout=timeout)
print(before, lease.fence, flush=True)
sys.stdin.read()  # hold until killed (or stdin closes)
