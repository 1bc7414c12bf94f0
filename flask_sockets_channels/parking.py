"""Idle connections without a reader thread: one poller for the process.

A reader that has had no input for ``idle_reader_timeout`` parks its
connection's socket here, and its thread ends. The poller, one thread and
one epoll for the process, watches every parked socket and hands it back
(``wake``) at its first input, EOF or error: the connection starts a new
reader thread, which reads on where the last one stopped (the engine keeps
its state, a frame may be half read). So an idle connection costs no thread
of ours, and a busy one keeps its reader for as long as input flows.

Nothing else changes while a socket is parked: pings are written by the
timer thread, writes by whoever sends, and what ends a connection ends it
through the socket (the peer's close frame or EOF, the close timer's or
``abort``'s shutdown, TCP_USER_TIMEOUT's error): each makes the socket
readable, so the poller wakes a reader, which sees it as before.

epoll is Linux's; elsewhere :func:`available` is false and readers never
park. The poller never reads, parses or calls back into a view: it only
starts threads, so nothing a peer or a view does can stall it.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import socket

__all__ = ["ParkingLot", "available", "lot"]

_EVENTS = (
    getattr(select, "EPOLLIN", 0)
    | getattr(select, "EPOLLRDHUP", 0)
    | getattr(select, "EPOLLONESHOT", 0)
)


def available() -> bool:
    """Whether readers can park here (the platform has epoll)."""
    return hasattr(select, "epoll")


#: Seconds with nothing parked after which the poller's thread ends, as the
#: library's other threads do once no connection needs them.
EMPTY_FOR = 1.0


class ParkingLot:
    """The poller: parked sockets and what to call when each has input."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._wakes: dict[int, Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._wakes)

    def park(self, sock: socket.socket, wake: Callable[[], None]) -> bool:
        """Watch ``sock`` and call ``wake()`` (in the poller's thread, once)
        at its first input, EOF or error. False if it cannot be parked (no
        epoll, no thread for the poller): the caller reads on itself."""
        fd = sock.fileno()
        if fd < 0 or not available():
            return False
        with self._lock:
            epoll = self._epoll or self._start()
            if epoll is None:
                return False
            self._wakes[fd] = wake
            try:
                # Level-triggered: input that came before this call wakes it too.
                epoll.register(fd, _EVENTS)
            except OSError:
                del self._wakes[fd]
                return False
        return True

    def _start(self) -> select.epoll | None:
        """Locked: the epoll and its thread, started on the first park."""
        try:
            epoll = select.epoll()
        except OSError:
            return None
        thread = threading.Thread(
            target=self._run, args=(epoll,), name="flask-sockets-channels poller", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # at the process's thread limit
            epoll.close()
            return None
        self._epoll = epoll
        return epoll

    def _run(self, epoll: select.epoll) -> None:
        while True:
            try:
                ready = epoll.poll(EMPTY_FOR)
            except OSError:  # closed: the process forked and this is the copy
                return
            if not ready:
                with self._lock:
                    if not self._wakes:  # the next park starts another
                        self._epoll = None
                        epoll.close()
                        return
            for fd, _ in ready:
                with self._lock:
                    wake = self._wakes.pop(fd, None)
                    # Off the epoll before the socket can be parked again.
                    with contextlib.suppress(OSError):
                        epoll.unregister(fd)
                if wake is not None:
                    wake()

    def _forget(self) -> None:
        """In a forked child: the parent's sockets and epoll are not ours."""
        self._lock = threading.Lock()
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.close()
        self._epoll = None
        self._wakes = {}


#: The process's poller.
lot = ParkingLot()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lot._forget)
