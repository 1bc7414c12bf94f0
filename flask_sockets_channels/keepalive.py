"""One process-wide timer thread for every connection's deadlines.

A connection schedules itself with :meth:`Scheduler.schedule`; when it is due
the scheduler calls its ``tick(now)``, which sends a ping, declares a silent
peer dead or cuts a closing handshake that took too long, and returns when it
is due next (``None`` to stop). The thread starts with the first schedule and
ends when no connection is left, so the process's thread count returns to its
baseline.

Nothing here keeps a finished connection alive: the heap holds connection
ids, the only reference is in ``_due``, and :meth:`Scheduler.cancel` (called
by the connection's teardown) drops it.

The thread serves every connection of the process, so nothing may end it
but an empty schedule: a ``tick`` that raises (a bug) cuts that connection
only, and if the thread ends anyway, a new one takes over.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import select
import socket
import threading
import time
from typing import Protocol

from .exceptions import KeepaliveTimeout

__all__ = ["Scheduler", "Timed", "input_waiting", "limit_unacknowledged", "scheduler", "vanished"]

logger = logging.getLogger("flask_sockets_channels")


class Timed(Protocol):
    """What the scheduler needs of a connection."""

    name: str

    def tick(self, now: float) -> float | None:
        """Do what is due at ``now``; return the next due time, or ``None``.
        Must never block."""

    def abort(self) -> None:
        """Cut the connection at once (its ``tick`` failed)."""


class Scheduler:
    """Calls ``tick(now)`` of scheduled connections when they are due."""

    def __init__(self) -> None:
        self._wakeup = threading.Condition()  # guards every field below
        self._heap: list[tuple[float, int, int]] = []  # (due, order, id)
        self._due: dict[int, tuple[Timed, float]] = {}  # id -> (connection, due)
        self._thread: threading.Thread | None = None
        self._order = itertools.count()
        self._ticking: int | None = None  # id of the connection in tick()
        self._ticking_cancelled = False

    def schedule(self, connection: Timed, due: float) -> None:
        """Call ``connection.tick`` at monotonic time ``due``, or earlier if
        it is already scheduled earlier.

        Raises:
            RuntimeError: The timer thread was needed and could not start
                (the process is at its thread limit); ``connection`` is not
                scheduled, and the next call tries again.
        """
        with self._wakeup:
            key = id(connection)
            current = self._due.get(key)
            if current is not None and current[1] <= due:
                return
            self._due[key] = (connection, due)
            heapq.heappush(self._heap, (due, next(self._order), key))
            if len(self._heap) > 2 * len(self._due) + 64:
                self._compact()
            if self._thread is None:
                try:
                    self._start_thread()
                except RuntimeError:
                    del self._due[key]  # no reference kept; the heap entry goes stale
                    raise
            elif self._heap[0][2] == key:
                self._wakeup.notify()

    def _start_thread(self) -> None:
        """Locked: start the timer thread. Raises ``RuntimeError``."""
        thread = threading.Thread(
            target=self._run, name="flask-sockets-channels timers", daemon=True
        )
        thread.start()
        self._thread = thread

    def cancel(self, connection: Timed) -> None:
        """Stop calling ``connection`` and drop the reference to it."""
        with self._wakeup:
            key = id(connection)
            if key == self._ticking:
                self._ticking_cancelled = True
            if self._due.pop(key, None) is not None and not self._due:
                self._wakeup.notify()

    def scheduled(self, connection: Timed) -> bool:
        """Whether ``connection`` is scheduled."""
        with self._wakeup:
            return id(connection) in self._due

    @property
    def running(self) -> bool:
        """Whether the scheduler's thread is alive."""
        with self._wakeup:
            return self._thread is not None

    def _run(self) -> None:
        # Owns: the calls to tick(), one at a time. Ends as soon as nothing is
        # scheduled; if anything else ends it, _take_over starts another.
        try:
            self._tick_while_scheduled()
        finally:
            self._take_over()

    def _tick_while_scheduled(self) -> None:
        while True:
            with self._wakeup:
                entry = self._next()
                if entry is None:
                    self._thread = None
                    return
                connection, due = entry
                now = time.monotonic()
                if due > now:
                    self._wakeup.wait(due - now)
                    continue
                heapq.heappop(self._heap)
                del self._due[id(connection)]
                self._ticking, self._ticking_cancelled = id(connection), False
            try:
                next_due = connection.tick(now)
            except Exception:  # a bug: it must not end the timers of the process
                logger.error("timers: %s failed; cutting it", connection.name, exc_info=True)
                next_due = None
                try:
                    connection.abort()
                except Exception:
                    logger.error("timers: cutting %s failed", connection.name, exc_info=True)
            with self._wakeup:
                cancelled = self._ticking_cancelled
                self._ticking = None
            if next_due is not None and not cancelled:
                self.schedule(connection, next_due)
            del connection  # no reference held while waiting

    def _take_over(self) -> None:
        """The thread is ending: if connections are still scheduled (it was
        ended by something other than an empty schedule), start another."""
        with self._wakeup:
            if self._thread is not threading.current_thread():
                return  # it ended normally, and a schedule may have started another
            self._thread, self._ticking = None, None
            if self._due:
                try:
                    self._start_thread()
                except RuntimeError:  # the next schedule tries again
                    logger.error("timers: the timer thread ended and no other can start")

    def _next(self) -> tuple[Timed, float] | None:
        """The earliest live entry; stale heap entries are dropped."""
        while self._heap:
            due, _, key = self._heap[0]
            entry = self._due.get(key)
            if entry is not None and entry[1] == due:
                return entry
            heapq.heappop(self._heap)
        return None

    def _compact(self) -> None:
        self._heap = [(due, next(self._order), key) for key, (_, due) in self._due.items()]
        heapq.heapify(self._heap)


#: The process-wide scheduler.
scheduler = Scheduler()


def limit_unacknowledged(sock: socket.socket, pong_wait: float | None) -> None:
    """Have the kernel end the connection once bytes it sent stay
    unacknowledged for ``pong_wait`` (``TCP_USER_TIMEOUT``; Linux).

    A peer gone without FIN or RST (a laptop asleep, a phone off the
    network) is otherwise found by the missing pong, which a reader paused
    for the rate limit or a full ``receiver`` cannot read, and a writer
    blocked on a full buffer cannot even send: the connection would wait
    for ``write_wait``, or for the kernel's retransmissions to give up
    (about 15 minutes). A live peer acknowledges the pings, so this ends
    only what ``pong_wait`` already calls dead. No-op where the option does
    not exist or the socket is not TCP.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if pong_wait is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, round(pong_wait * 1000)))


_INPUT = getattr(select, "POLLIN", 0)
_FAILED = sum(getattr(select, name, 0) for name in ("POLLERR", "POLLHUP", "POLLNVAL"))


def input_waiting(sock: socket.socket) -> bool:
    """Bytes or an EOF from the peer wait in the kernel, unread: the peer was
    alive after our last read, and it is our reading that lags (a reader or a
    parked socket's wake waiting for the GIL behind a busy process). False
    after a reset or an error, on a closed socket, or where ``poll`` does
    not exist."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()  # not select(): file descriptors past 1023
    try:
        poller.register(sock, _INPUT)
        ready = poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return any(events & _INPUT and not events & _FAILED for _, events in ready)


def vanished(exc: OSError | None, pong_wait: float | None) -> KeepaliveTimeout | None:
    """The error to report when a socket error is the kernel's verdict of
    :func:`limit_unacknowledged` (``ETIMEDOUT``), else ``None``. The reader
    or a writer, whichever meets it first, reports it."""
    if exc is None or exc.errno != errno.ETIMEDOUT:
        return None
    error = KeepaliveTimeout(f"nothing acknowledged within {pong_wait} s")
    error.__cause__ = exc
    return error
