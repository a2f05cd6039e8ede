"""The judgement status prints per mutex, and the time forms it shows: what stays true when a
reading covers thousands of mutexes (each holder's process asked once, times written alike)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from mutexctl.diagnose import liveness, why
from mutexctl.identity import host_name
from mutexctl.models import CLI, Holder, MutexState, iso_ms, parse_iso


def _held_by(pid: int, name: str) -> MutexState:
    now = datetime.now(UTC)
    return MutexState(name, True, "node-a", now, now + timedelta(hours=1), 3_600_000, 1,
                      Holder(host_name(), pid, "ops", "./export.sh", via=CLI), now, 3_600_000, since=now)


def test_one_reading_asks_each_holder_process_once_and_tells_the_living_from_the_exited(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    asked: list[int] = []
    real_kill = os.kill

    def counting_kill(pid: int, signum: int) -> None:
        asked.append(pid)
        real_kill(pid, signum)

    monkeypatch.setattr(os, "kill", counting_kill)  # (diagnose asks through os.kill)
    alive = liveness(host_name())
    states = [_held_by(os.getpid() if i % 2 else gone.pid, f"m{i}") for i in range(200)]
    said = [why(state, alive=alive) for state in states]
    assert sorted(asked) == sorted({os.getpid(), gone.pid})  # two processes, two questions
    assert all("is running" in text for text in said[1::2])
    assert all("has exited on this host" in text for text in said[0::2])
    # Without a shared reading, each judgement asks again (a long-lived watcher sees changes).
    asked.clear()
    why(states[1], host_name())
    why(states[1], host_name())
    assert asked == [os.getpid(), os.getpid()]


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 27, 12, 3, 6, 908_999, tzinfo=UTC),
    datetime(2026, 11, 27, 14, 3, 6, 908_000, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 11, 27, 12, 3, 6, 908_500, tzinfo=timezone(timedelta(0))),
])
def test_times_are_shown_in_the_seeds_form_in_utc_with_milliseconds_cut(moment: datetime) -> None:
    assert iso_ms(moment) == "2026-11-27T12:03:06.908Z"
    assert parse_iso(iso_ms(moment)) == moment.replace(microsecond=908_000)
    assert parse_iso("2026-11-27T12:03:06.908Z").tzinfo == UTC
