"""`status --watch`: a live view on a terminal (a pty here) that counts down and redraws in place,
ends cleanly on Ctrl-C; piped, one snapshot per interval; one store read per interval."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from datetime import datetime

from mutexctl.service import Service

from ..conftest import BUSY_S, Cli, mutexctl_argv


def _watch_on_a_terminal(argv: list[str], env: dict[str, str], seconds: float) -> tuple[str, int]:
    """Run ``argv`` on a pty for ``seconds``, then type Ctrl-C; its output and exit status."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, {"COLUMNS": "150", "LINES": "40", "TERM": "xterm", **env})
    out, deadline, interrupted = b"", time.monotonic() + seconds, False
    while True:
        if not interrupted and time.monotonic() >= deadline:
            os.write(fd, b"\x03")  # Ctrl-C, as the terminal's user types it
            interrupted = True
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif interrupted and time.monotonic() > deadline + 10:
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_watch_on_a_terminal_counts_down_in_place_and_quits_on_ctrl_c(cli: Cli, service: Service) -> None:
    service.try_acquire("deploy", timeout="1h", command="./deploy.sh")
    with service.lock("done-job", timeout="10s"):
        pass
    text, code = _watch_on_a_terminal([*mutexctl_argv(), "status", "--watch", "--interval", "300ms"],
                                      {**cli.env, "NO_COLOR": "1"}, 2.5)
    assert code == 0, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "Traceback" not in plain and "deploy" in plain and "held" in plain
    # redrawn in place: the cursor moves up over the previous frame instead of scrolling
    assert re.search(r"\x1b\[\d*A", text) or "\x1b[1A" in text
    left = re.findall(r"59m5\d\.\ds|59m5\ds|\b59m\d\ds", plain)
    assert len(set(left)) >= 2, left  # the time left counts down
    # the newest events, from the same read
    assert "recent events" in plain and "release" in plain and "done-job" in plain
    assert text.rstrip().endswith(("\x1b[?25h", "quits")) or "\x1b[?25h" in text  # the cursor is given back


def test_watch_on_a_small_terminal_shows_held_and_waited_for_mutexes_first(cli: Cli, service: Service) -> None:
    for n in range(40):  # free ones that sort before the held one by name
        with service.lock(f"a-{n:02}", timeout="10s"):
            pass
    service.try_acquire("zz-held", timeout="1h")
    env = {**cli.env, "NO_COLOR": "1", "COLUMNS": "120", "LINES": "30"}
    text, code = _watch_on_a_terminal([*mutexctl_argv(), "status", "--watch", "--interval", "500ms"], env, 2.5)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert code == 0, plain
    start = [m.start() for m in re.finditer(r"MUTEX +STATE", plain)][-1]  # (frames follow without a newline)
    frame = plain[start:plain.find("recent events", start)]  # the mutexes of the last frame drawn
    rows = [line.split()[0] for line in frame.splitlines()[1:] if line.strip()]
    assert rows[0] == "zz-held", frame  # held first, not cut off below 40 free ones
    assert "… " in frame and "more (" in frame and "free)" in frame, frame  # the rest, counted
    assert len(plain[start:].splitlines()) <= 30  # the whole frame fits
    held, code = _watch_on_a_terminal([*mutexctl_argv(), "status", "--watch", "--held", "--interval", "500ms"],
                                      env, 2.0)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", held)
    assert code == 0 and "zz-held" in shown and "a-00" not in shown, shown  # --held works with --watch


def test_the_time_left_and_the_why_line_of_a_row_agree_between_reads(cli: Cli, service: Service) -> None:
    service.try_acquire("deploy", timeout="1h")
    env = {**cli.env, "NO_COLOR": "1", "COLUMNS": "250", "LINES": "40"}
    text, code = _watch_on_a_terminal([*mutexctl_argv(), "status", "--watch", "--interval", "2s"], env,
                                      2 * BUSY_S)  # (a busy host starts it slowly: room for several redraws)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert code == 0, plain
    pairs = re.findall(r"deploy\s+held\s+\S+\s+\S+\s+(\S+)\s.*?lease ends in (\S+) unless renewed", plain)
    assert len(pairs) >= 3, plain  # several redraws between two reads
    assert all(left == why for left, why in pairs), pairs
    assert len({left for left, _ in pairs}) >= 2, pairs  # and both count down


def _lines_until(proc: subprocess.Popen[str], enough: int, timeout: float) -> list[str]:
    """Read ``proc``'s stdout until ``enough`` lines came (or the deadline: the test then fails on the count)."""
    assert proc.stdout is not None
    lines, deadline = [], time.monotonic() + timeout
    while len(lines) < enough and time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    return lines


def test_watch_piped_prints_one_snapshot_per_interval(cli: Cli, service: Service) -> None:
    service.try_acquire("deploy", timeout="1h")
    proc = cli.popen("--json", "status", "--watch", "--interval", "200ms")
    first = _lines_until(proc, 4, timeout=20 * BUSY_S)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20 * BUSY_S)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in [*first, *out.splitlines()]]
    assert len(docs) >= 4, len(docs)
    assert all(d["mutexes"][0]["mutex"] == "deploy" and d["mutexes"][0]["state"] == "held" for d in docs)
    assert docs[0]["events"][0]["event"] == "acquire"
    times = [datetime.fromisoformat(d["at"]) for d in docs]
    assert times == sorted(times) and len(set(times)) == len(times)
    per_snapshot = (times[-1] - times[0]).total_seconds() / (len(times) - 1)
    assert per_snapshot >= 0.19, times  # one per interval, not more often (fewer is the machine's load)
    text = cli.popen("status", "--watch", "--interval", "200ms")
    shown = "".join(_lines_until(text, 1, timeout=20 * BUSY_S))
    while shown.count("# at ") < 2:
        more = _lines_until(text, 1, timeout=20 * BUSY_S)
        assert more, shown
        shown += more[0]
    text.send_signal(signal.SIGINT)
    out, _ = text.communicate(timeout=20 * BUSY_S)
    assert text.returncode == 0 and "deploy" in shown + out


def test_watch_refuses_a_bad_interval(cli: Cli) -> None:
    for bad in ("0", "10ms", "soon"):
        done = cli("status", "--watch", "--interval", bad)
        assert done.returncode == 2 and "--interval" in done.stderr and "Traceback" not in done.stderr


def test_one_read_per_interval_on_mongodb(cli: Cli, store_url: str) -> None:
    if store_url.startswith("sqlite"):
        return  # one read is one SQLite transaction by construction (Leases.overview); counted on MongoDB
    code = ("import sys, time, threading, signal\n"
            "from pymongo import monitoring\n"
            "class L(monitoring.CommandListener):\n"
            "    def started(self, e): print('COMMAND', e.command_name, file=sys.stderr, flush=True)\n"
            "    def succeeded(self, e): pass\n"
            "    def failed(self, e): pass\n"
            "monitoring.register(L())\n"
            "from mutexctl.cli import main\n"
            "threading.Timer(1.1, lambda: signal.raise_signal(signal.SIGINT)).start()\n"
            "main(['status', '--watch', '--interval', '250ms'])\n")
    done = subprocess.run([sys.executable, "-c", code], env=cli.env, capture_output=True, text=True, timeout=60)
    sent = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("COMMAND ")]
    sent = [name for name in sent if name not in ("hello", "isMaster", "ping", "endSessions")]
    reads = [tuple(sent[i:i + 2]) for i in range(0, len(sent), 2)]  # a read: the joins, then the documents
    # At most one read per 250 ms in 1.1 s; at least two, however busy the machine is.
    assert set(reads) == {("aggregate", "find")} and 2 <= len(reads) <= 6, (sent, done.stderr[-2000:])
