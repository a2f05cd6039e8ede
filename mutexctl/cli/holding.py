"""``acquire NAME --hold-for PID``: the mutexctl a user runs starts a detached keeper (this same command
line, with the keeper's report descriptor) and tells what it took; the keeper takes the lease, reports,
and holds it until PID exits (mutexctl.exec.holdfor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ..errors import MutexctlError, UsageError
from ..models import Lease, human_ms
from . import exit_codes, hints
from .common import Invocation


def hold(inv: Invocation, name: str, hold_for: str, report_fd: int | None, timeout: str | None,
         wait_s: float | None, limit: int | None, shared: bool) -> int:
    pid = _pid(hold_for)
    if report_fd is not None:
        return _keep(inv, name, pid, report_fd, timeout, wait_s, limit, shared)
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "mutexctl", *inv.argv, "--hold-for", str(pid), "--hold-report", str(write_end)]
    keeper = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              pass_fds=(write_end,), start_new_session=True)  # (the terminal's signals pass it by)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            said = pipe.read()  # until the keeper has taken the lease, or failed to
    except BaseException:  # Ctrl-C while it waits: nothing is to be held
        keeper.terminate()
        raise
    if not said:
        status = keeper.wait()
        raise MutexctlError(f"the keeper of '{name}' ended before it took the lease (status {status})")
    doc: dict[str, Any] = json.loads(said)
    if not doc["ok"]:
        error = MutexctlError(doc["message"], hint=doc.get("hint"))
        error.kind = doc["kind"]
        inv.out.fail(error, doc["code"])
        return int(doc["code"])
    if inv.as_json:
        inv.out.doc({"ok": True, "mutex": name, "node": doc["node"], "fence": doc["fence"],
                     "timeout_ms": doc["timeout_ms"], "hold_for": pid, "keeper_pid": keeper.pid})
    else:
        inv.out.data(str(doc["fence"]))
        inv.out.detail(f"acquired '{name}' as {doc['node']} (fence {doc['fence']}), renewed every "
                       f"{human_ms(doc['timeout_ms'] / 3)} by keeper pid {keeper.pid} until process {pid} exits; "
                       f"release sooner with: mutexctl release {name} --token {doc['fence']}")
    return exit_codes.SUCCESS


def _pid(text: str) -> int:
    if text == "parent":
        return os.getppid()
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--hold-for {text!r} is not a process id", hint="give a pid ($$ is this shell's), or parent")
    return int(text)


def _keep(inv: Invocation, name: str, pid: int, report_fd: int, timeout: str | None, wait_s: float | None,
          limit: int | None, shared: bool) -> int:
    """The keeper: take, report on ``report_fd`` (then closed: the starter goes on), hold until ``pid`` exits."""
    from ..exec.holdfor import hold_for

    sys.argv = ["mutexctl", *inv.argv[:-4]]  # the holder's command line on record: what the user typed
    report = os.fdopen(report_fd, "w")

    def tell(result: Lease | MutexctlError) -> None:
        if isinstance(result, Lease):
            doc: dict[str, Any] = {"ok": True, "fence": result.fence, "timeout_ms": result.timeout_ms,
                                   "node": result.node_id}
        else:
            doc = {"ok": False, "code": exit_codes.exit_code_for(result, conflict_code=inv.conflict_code),
                   "kind": result.kind, "message": hints.message_of(result), "hint": hints.hint(result)}
        with report:
            report.write(json.dumps(doc))

    try:
        with inv.service() as svc:
            request = svc.leases.request(name, timeout=timeout, wait=wait_s, limit=limit, shared=shared)
            return hold_for(svc.leases, request, pid, tell)
    except MutexctlError as exc:  # (before the lease could be asked for: the store, the input)
        if not report.closed:
            tell(exc)
        return 1
