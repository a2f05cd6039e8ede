"""The waiters' queue on SQLite: one row per waiting process, refreshed at each of its polls (inside
the poll's transaction), a ticket per mutex for first come, first served; rows not refreshed for
WAITER_STALE_MS (on this host's boot clock) are skipped and dropped."""

from __future__ import annotations

from ...models import Holder, Waiter, WakeList, parse_iso
from ..common import WAITER_STALE_MS
from .statements import Operation, row, rows, run
from .times import SQL_NOW

_LIVE = "bootId = :boot AND seenNs > :stale_ns"


def params(mutex_id: str, boot: str, now_ns: int) -> dict[str, object]:
    return {"id": mutex_id, "boot": boot, "stale_ns": now_ns - WAITER_STALE_MS * 1_000_000, "now_ns": now_ns}


def someone_waits(mutex_id: str, boot: str, now_ns: int) -> Operation[bool]:
    return (yield row(f"SELECT 1 FROM waiters WHERE mutexId = :id AND {_LIVE} LIMIT 1",
                      params(mutex_id, boot, now_ns))) is not None


def join(mutex_id: str, token: str, node_id: str, holder: Holder, boot: str, now_ns: int) -> Operation[int]:
    """Drop the mutex's stale entries, then refresh ours (taking the next ticket the first time);
    returns how many live waiters are ahead of us."""
    args = {**params(mutex_id, boot, now_ns), "token": token}
    yield run(f"DELETE FROM waiters WHERE mutexId = :id AND NOT ({_LIVE})", args)
    mine = yield row("SELECT ticket FROM waiters WHERE mutexId = :id AND token = :token", args)
    if mine is None:
        ticket = (yield row("SELECT COALESCE(MAX(ticket), 0) + 1 FROM waiters WHERE mutexId = :id", args))[0]
        yield run(f"INSERT INTO waiters (mutexId, token, node, host, pid, user, since, sinceNs, seenNs, bootId, "
                  f"ticket) VALUES (:id, :token, :node, :host, :pid, :user, {SQL_NOW}, :now_ns, :now_ns, :boot, "
                  ":ticket)", {**args, "node": node_id, "host": holder.host, "pid": holder.pid, "user": holder.user,
                               "ticket": ticket})
    else:
        ticket = mine[0]
        yield run("UPDATE waiters SET seenNs = :now_ns WHERE mutexId = :id AND token = :token", args)
    return int((yield row("SELECT COUNT(*) FROM waiters WHERE mutexId = :id AND ticket < :ticket",
                          {**args, "ticket": ticket}))[0])


def in_line(mutex_id: str, boot: str, now_ns: int) -> Operation[WakeList]:
    """The mutex's live waiters in line order, as (host, token)."""
    return tuple((yield rows(f"SELECT host, token FROM waiters WHERE mutexId = :id AND {_LIVE} ORDER BY ticket",
                             params(mutex_id, boot, now_ns))))


def leave(mutex_id: str, token: str) -> Operation[None]:
    yield run("DELETE FROM waiters WHERE mutexId = ? AND token = ?", (mutex_id, token))


def waiters_of(mutex_ids: list[str], boot: str, now_ns: int) -> Operation[dict[str, list[Waiter]]]:
    """The live waiters of each of ``mutex_ids``, in ticket order."""
    if not mutex_ids:
        return {}
    marks = ", ".join("?" for _ in mutex_ids)
    found_rows = yield rows(f"SELECT mutexId, node, host, pid, since, sinceNs, ticket FROM waiters WHERE mutexId IN "
                            f"({marks}) AND bootId = ? AND seenNs > ? ORDER BY mutexId, ticket",
                            (*mutex_ids, boot, now_ns - WAITER_STALE_MS * 1_000_000))
    found: dict[str, list[Waiter]] = {}
    for mutex_id, node, host, pid, since, since_ns, ticket in found_rows:
        found.setdefault(mutex_id, []).append(
            Waiter(node, host, pid, parse_iso(since), max(0, (now_ns - since_ns) // 1_000_000), ticket))
    return found


