"""A listener's place in one channel's log.

Senders take a sequence number per channel (one atomic counter increment), then insert the message.
Two senders can therefore commit out of order — 6 visible before 5. A listener must not skip 5, so
its saved position only moves over *contiguous* numbers: a message above a gap is handled at once,
but the position waits at the gap until the missing number appears, or until it has been missing
for ``gap_grace_s`` (its sender died between taking the number and inserting the message).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import Message, Registration


@dataclass
class Cursor:
    """``position``: every number up to it is handled (or skipped as a lost gap); it is what is saved.
    ``done_above``: numbers above a gap already handled in this run.
    """

    position: int
    gap_grace_s: float
    done_above: set[int] = field(default_factory=set)
    gap_seen_at: dict[int, float] = field(default_factory=dict)

    @classmethod
    def start(cls, registration: Registration, latest: int, *, from_start: bool, gap_grace_s: float) -> Cursor:
        """From the log's start if asked (what this node acked is still not run again), else resume at
        the saved position, else at the node's first registration (``since``), else at ``latest``.

        ``since`` is the channel's last number read *before* the node first registered, and a sender
        reads the registry before it takes a number: so a message that counts on this node has a
        higher number, and a node that never saved a position (it stopped before its first message)
        still gets every message sent after it first listened, however long it was away.
        """
        if from_start:
            return cls(0, gap_grace_s)
        for known in (registration.cursor, registration.since):
            if known is not None:
                return cls(known, gap_grace_s)
        return cls(latest, gap_grace_s)

    def wanted(self, message: Message) -> bool:
        return message.seq > self.position and message.seq not in self.done_above

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
