"""A cap on the log lines one connection's peer can cause.

A peer that sends 5,000 undecodable one-byte messages must not write 5,000
WARNING lines: the lines a peer can repeat at will on an open connection
(a message that does not decode, an ``errors`` channel that is full, a user
callback that keeps raising) go through the connection's :class:`LogLimit`.
At most ``LOG_BURST`` such lines are written in a row, then one more per
``LOG_INTERVAL / LOG_BURST`` seconds; the next line written says how many
were left out, and so does the connection's last line if some still were.
A line that ends the connection is written once anyway and is never capped.
"""

from __future__ import annotations

from .ratelimit import TokenBucket

__all__ = ["LOG_BURST", "LOG_INTERVAL", "LogLimit"]

#: Capped lines written in a row, at most.
LOG_BURST = 5
#: Seconds over which LOG_BURST more capped lines are allowed.
LOG_INTERVAL = 60.0


class LogLimit:
    """Decides which capped lines of one connection are written; counts the
    others. Not thread-safe on its own: a left-out line may be miscounted
    when two threads log at once, never written twice."""

    __slots__ = ("_bucket", "suppressed")

    def __init__(self) -> None:
        self._bucket = TokenBucket(LOG_BURST, LOG_INTERVAL)
        #: Lines left out since the last one written.
        self.suppressed = 0

    def allow(self) -> int | None:
        """``None`` if the next line is to be left out (it is counted); else
        how many were left out before it (and the count starts again)."""
        if not self._bucket.take(1):
            self.suppressed += 1
            return None
        left_out, self.suppressed = self.suppressed, 0
        return left_out
