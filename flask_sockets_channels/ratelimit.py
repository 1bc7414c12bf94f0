"""``Options.rate_limit``: a token bucket for inbound messages.

The reader asks the bucket how many of the messages it just read may go to
the view now; the rest wait (the reader does not read meanwhile, so TCP
pushes back on the client). Nothing is dropped.
"""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``messages`` per ``seconds`` on average, in bursts of at most
    ``messages``, or of one when ``messages`` is below one (``(0.5, 1.0)``:
    one every two seconds). Not thread-safe: one per connection, used by its
    reader."""

    def __init__(self, messages: float, seconds: float) -> None:
        # A bucket that holds less than one token never gives one.
        self._capacity = max(1.0, float(messages))
        self._per_second = messages / seconds
        self._tokens = self._capacity
        self._updated = time.monotonic()

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; return how many were taken."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now
        taken = min(wanted, int(self._tokens))
        self._tokens -= taken
        return taken

    def wait_time(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self._tokens) / self._per_second)
