"""A service through its life, for the lifecycle tests. Usage: service_life.py STORE_URL NODE MODE OUT

Takes, with ``connect(release_on_signals=True)``: ``P("p", NODE, 60000)``, a slot of ``s`` (limit 2,
60 s) by try_acquire, then ``lock("b", timeout="60s", on_lost=…)`` (in the main thread, or with
MODE ``thread`` in a worker thread that stops when told). Prints "ready" once all are held, then
waits inside the block until a signal ends it. The on_lost callback appends "told: REASON" to OUT.
MODE ``exit``: takes ``P("p", …)`` only and returns (the interpreter's exit must release it).
"""

import sys
import threading
from pathlib import Path

import mutexctl

store, node, mode, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])


def told(reason: str) -> None:
    with out.open("a") as f:
        f.write(f"told: {reason}\n")


svc = mutexctl.connect(store=store, node_id=node, release_on_signals=True)
assert svc.P("p", node, 60000)
if mode == "exit":
    print("ready", flush=True)
    sys.exit(0)
svc.try_acquire("s", timeout="60s", limit=2)
if mode == "thread":
    entered = threading.Event()

    def work() -> None:
        with svc.lock("b", timeout="60s", on_lost=told) as held:
            entered.set()
            held.stop_event.wait()  # the work, until it must stop
        with out.open("a") as f:
            f.write("worker left its block\n")

    worker = threading.Thread(target=work)  # not a daemon: the interpreter's exit waits for it
    worker.start()
    entered.wait()
    print("ready", flush=True)
    threading.Event().wait()  # the main thread idles until the signal
else:
    with svc.lock("b", timeout="60s", on_lost=told) as held:
        print("ready", flush=True)
        threading.Event().wait()  # the work, until the signal ends it
