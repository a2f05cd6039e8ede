"""A listener's place in one channel's log.

Senders take a sequence number per channel (one atomic counter increment), then insert the message.
Two senders can therefore commit out of order — 6 visible before 5. A listener must not skip 5, so
its saved position only moves over *contiguous* numbers: a message above a gap is handled at once,
but the position waits at the gap until the missing number appears, or until it has been missing
for ``gap_grace_s`` (its sender died between taking the number and inserting the message).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import Message

# A new listener also looks this far back for messages whose sender counted on it (see Cursor.start).
BACKFILL = 100


@dataclass
class Cursor:
    """``position``: every number up to it is handled (or skipped as a lost gap); it is what is saved.
    ``done_above``: numbers above a gap already handled in this run.
    ``backfill_to``: at or below it, only messages that name this node as expected are for us.
    """

    position: int
    gap_grace_s: float
    backfill_to: int = 0
    done_above: set[int] = field(default_factory=set)
    gap_seen_at: dict[int, float] = field(default_factory=dict)

    @classmethod
    def start(cls, saved: int | None, latest: int, *, from_start: bool, gap_grace_s: float) -> Cursor:
        """From the log's start if asked (what this node acked is still not run again), else resume at
        ``saved``, else (a new listener) from ``latest``.

        A new listener registers before reading ``latest``, and a sender reads the registry before
        taking its number, so a message that expects this listener can carry a number just below
        ``latest``: the last BACKFILL numbers are read too, for messages naming this node.
        """
        if from_start:
            return cls(0, gap_grace_s)
        if saved is not None:
            return cls(saved, gap_grace_s)
        return cls(max(0, latest - BACKFILL), gap_grace_s, backfill_to=latest)

    def wanted(self, message: Message, node: str) -> bool:
        if message.seq <= self.position or message.seq in self.done_above:
            return False
        return message.seq > self.backfill_to or node in message.expected

    def mark(self, seq: int) -> None:
        if seq > self.position:
            self.done_above.add(seq)

    def advance(self, now: float) -> bool:
        """Move ``position`` over contiguous handled numbers, and over gaps older than the grace.

        Returns whether the position moved, i.e. whether it is worth saving.
        """
        start = self.position
        while self.done_above:
            following = self.position + 1
            if following in self.done_above:
                self.done_above.discard(following)
                self.gap_seen_at.pop(following, None)
                self.position = following
                continue
            first_seen = self.gap_seen_at.setdefault(following, now)
            if now - first_seen < self.gap_grace_s:
                break
            self.gap_seen_at.pop(following)  # its sender took the number and never inserted it
            self.position = following
        return self.position != start
