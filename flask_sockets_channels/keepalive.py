"""One process-wide thread that keeps every connection's keepalive.

A connection registers itself when it opens; the scheduler calls its
``keepalive(now)`` when it is due, which sends a ping or declares the peer
dead, and returns when it is due next (``None`` to stop). The thread starts
with the first registration and ends when no connection is left, so the
process's thread count returns to its baseline.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Protocol

__all__ = ["Keepalive", "scheduler"]


class Keepalive(Protocol):
    """What the scheduler needs of a connection."""

    name: str

    def keepalive(self, now: float) -> float | None:
        """Do what is due at ``now``; return the next due time, or ``None``."""


class KeepaliveScheduler:
    """Calls ``keepalive(now)`` of registered connections when they are due.

    ``keepalive`` must never block: it only queues a ping or requests a close.
    """

    def __init__(self) -> None:
        self._wakeup = threading.Condition()  # guards the three fields below
        self._heap: list[tuple[float, int, Keepalive]] = []
        self._registered: set[int] = set()  # ids of registered connections
        self._thread: threading.Thread | None = None
        self._order = itertools.count()

    def register(self, connection: Keepalive, due: float) -> None:
        """Call ``connection.keepalive`` at monotonic time ``due``."""
        with self._wakeup:
            self._registered.add(id(connection))
            heapq.heappush(self._heap, (due, next(self._order), connection))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="flask-sockets-channels keepalive", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is connection:
                self._wakeup.notify()

    def unregister(self, connection: Keepalive) -> None:
        """Stop calling ``connection``; its heap entry is dropped lazily."""
        with self._wakeup:
            self._registered.discard(id(connection))
            if not self._registered:
                self._wakeup.notify()

    @property
    def running(self) -> bool:
        """Whether the scheduler's thread is alive."""
        with self._wakeup:
            return self._thread is not None

    def _run(self) -> None:
        # Owns: the heap's order of calls. Ends as soon as nothing is registered.
        while True:
            with self._wakeup:
                due = self._next_due()
                if due is None:
                    self._thread = None
                    return
                now = time.monotonic()
                if due[0] > now:
                    self._wakeup.wait(due[0] - now)
                    continue
                heapq.heappop(self._heap)
                connection = due[2]
            next_due = connection.keepalive(now)
            with self._wakeup:
                if next_due is None:
                    self._registered.discard(id(connection))
                elif id(connection) in self._registered:
                    heapq.heappush(self._heap, (next_due, next(self._order), connection))

    def _next_due(self) -> tuple[float, int, Keepalive] | None:
        assert self._wakeup._is_owned()  # type: ignore[attr-defined]
        while self._heap and id(self._heap[0][2]) not in self._registered:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None


#: The process-wide scheduler.
scheduler = KeepaliveScheduler()
