"""Idle connections without a reader thread: one poller for the process.

A reader that has had no input for ``idle_reader_timeout`` parks its
connection's socket here, and gives its thread up. The poller, one thread
and one epoll for the process, watches every parked socket and, at its
first input, EOF or error, calls the connection's ``woken`` in its own
thread. That never reads: it wakes the view's ``get`` that parked the
socket for itself (see :mod:`.receiver`), or hands the connection's
``read_on`` to a worker thread (:meth:`ParkingLot.dispatch`), which reads
on where the last reader stopped (the engine keeps its state; a frame may
be half read) until the connection is idle again or ends. Workers are
reused: a woken connection costs a hand-off, not a thread start
(measured: at 10,000 connections, starting a thread for every pong took
about 1 ms of the poller's time, too slow to keep up). A worker with
nothing to do for ``WORKER_IDLE`` seconds ends, and so does the poller with
nothing parked: with no connection, the library holds no thread.

Nothing else changes while a socket is parked: pings are written by the
timer thread, writes by whoever sends, and what ends a connection ends it
through the socket (the peer's close frame or EOF, the close timer's or
``abort``'s shutdown, TCP_USER_TIMEOUT's error): each makes the socket
readable, so the poller wakes a reader, which sees it as before.

A view that read its socket while it waited (see ``Connection``) may
*hold* it instead of parking it again: between two of its ``get`` calls the
socket is neither watched nor read, and the view's next ``get`` reads on
without an ``epoll_ctl`` either way. The poller parks every held socket
every ``HOLD_FOR`` seconds, so a view that works for longer leaves its
socket watched, as before, within that bound; closing a connection parks
its held socket at once.

epoll is Linux's; elsewhere :func:`available` is false and readers never
park. The poller never reads, parses or calls back into a view (``woken``
takes a channel's lock for a moment at most), so nothing a peer or a view
does can stall it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import socket

__all__ = ["ParkingLot", "available", "lot"]

_EVENTS = (
    getattr(select, "EPOLLIN", 0)
    | getattr(select, "EPOLLRDHUP", 0)
    | getattr(select, "EPOLLONESHOT", 0)
)
#: Seconds with nothing parked after which the poller's thread ends.
EMPTY_FOR = 1.0
#: Seconds a worker waits for a woken connection before it ends.
WORKER_IDLE = 5.0
#: Seconds at most between two parkings of the held sockets.
HOLD_FOR = 0.05


def available() -> bool:
    """Whether readers can park here (the platform has epoll)."""
    return hasattr(select, "epoll")


class ParkingLot:
    """The poller, its parked sockets, and the workers that read on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._wakes: dict[int, Callable[[], None]] = {}
        # Held sockets: read by nobody, watched by nobody, until the next
        # sweep parks them.
        self._held: dict[int, Callable[[], None]] = {}
        # In the epoll, their one event fired: re-armed by the next park.
        self._disarmed: set[int] = set()
        # The workers' queue: woken connections' read_on, and how many
        # workers wait for one.
        self._work = threading.Condition(threading.Lock())
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._waiting = 0
        self._workers = 0

    def __len__(self) -> int:
        """How many sockets no thread reads: parked or held."""
        return len(self._wakes) + len(self._held)

    def parked(self, sock: socket.socket) -> bool:
        """Whether ``sock`` is parked: watched by the poller, read by nobody."""
        return sock.fileno() in self._wakes

    def park(self, sock: socket.socket, woken: Callable[[], None]) -> bool:
        """Watch ``sock``; at its first input, EOF or error, call
        ``woken()`` once, in the poller's thread: it must not block (it
        wakes a thread to read, or has :meth:`dispatch` start one). False if it
        cannot be parked (no epoll, no thread for the poller): the caller
        reads on itself."""
        fd = sock.fileno()
        if fd < 0 or not available():
            return False
        with self._lock:
            epoll = self._epoll or self._start()
            if epoll is None:
                return False
            try:
                # Level-triggered: input that came before this call wakes it too.
                self._arm(epoll, fd)
            except OSError:
                return False
            self._wakes[fd] = woken
        return True

    def claim(self, sock: socket.socket, woken: Callable[[], None]) -> bool:
        """Take ``sock`` back from the poller if it is parked with
        ``woken`` (not woken yet, not parked by another connection that got
        its file descriptor): the caller reads it now, and parks it again
        (or hands it to :meth:`dispatch`) when it is done."""
        fd = sock.fileno()
        with self._lock:
            if fd < 0 or self._epoll is None:
                return False
            if self._held.get(fd) == woken:
                del self._held[fd]
                return True
            if self._wakes.get(fd) != woken:
                return False
            del self._wakes[fd]
            with contextlib.suppress(OSError):  # armed: its event must not fire
                self._epoll.unregister(fd)
        return True

    def hold(self, sock: socket.socket, woken: Callable[[], None]) -> bool:
        """Leave ``sock``, just read by the caller, unwatched until the next
        sweep parks it (at most ``HOLD_FOR`` seconds) or :meth:`claim` takes
        it back. False if it cannot be held (no poller): the caller parks
        it."""
        fd = sock.fileno()
        if fd < 0:
            return False
        with self._lock:
            if (self._epoll or self._start()) is None:
                return False
            self._held[fd] = woken
        return True

    def release(self, sock: socket.socket, woken: Callable[[], None]) -> None:
        """Park ``sock`` now if it is held with ``woken``: its connection
        is closing, and the peer's answer must not wait for a sweep."""
        fd = sock.fileno()
        with self._lock:
            if fd < 0 or self._held.get(fd) != woken:
                return
            del self._held[fd]
            unparked = self._park_held([(fd, woken)])
        _call_all(unparked)

    def _park_held(self, held: list[tuple[int, Callable[[], None]]]) -> list[Callable[[], None]]:
        """Locked: watch the ``held`` sockets (the poller runs while any is
        held); return the ``woken`` of those that cannot be watched (to be
        called at once, as if they had woken)."""
        epoll = self._epoll
        if epoll is None:  # cannot be while any is held: as if woken
            return [woken for _, woken in held]
        unparked = []
        for fd, woken in held:
            try:
                self._arm(epoll, fd)
            except OSError:
                unparked.append(woken)
            else:
                self._wakes[fd] = woken
        return unparked

    def _arm(self, epoll: select.epoll, fd: int) -> None:
        """Locked: watch ``fd`` for one event. A socket whose last event
        fired is still in the epoll (one-shot): re-armed with one
        ``epoll_ctl``, and the poller needs none per event (each would
        give the GIL up, and wait for it behind every busy thread)."""
        if fd in self._disarmed:
            self._disarmed.discard(fd)
            with contextlib.suppress(FileNotFoundError):  # closed since: gone
                epoll.modify(fd, _EVENTS)
                return
        try:
            epoll.register(fd, _EVENTS)
        except FileExistsError:  # its file is still open under another fd
            epoll.modify(fd, _EVENTS)

    def dispatch(self, read_on: Callable[[], None]) -> None:
        """Run ``read_on()`` in a worker thread now: for a connection whose
        socket must be read and that no thread reads."""
        self._dispatch(read_on)

    def _start(self) -> select.epoll | None:
        """Locked: the epoll and its thread, started on the first park."""
        try:
            epoll = select.epoll()
        except OSError:
            return None
        thread = threading.Thread(
            target=self._poll, args=(epoll,), name="flask-sockets-channels poller", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # at the process's thread limit
            epoll.close()
            return None
        self._epoll = epoll
        return epoll

    def _poll(self, epoll: select.epoll) -> None:
        busy_at = time.monotonic()
        next_sweep = busy_at + HOLD_FOR
        while True:
            try:
                ready = epoll.poll(min(HOLD_FOR, EMPTY_FOR))
            except OSError:  # closed: the process forked and this is the copy
                return
            now = time.monotonic()
            unparked: list[Callable[[], None]] = []
            with self._lock:
                if now >= next_sweep:
                    next_sweep = now + HOLD_FOR
                    unparked = self._park_held(list(self._held.items()))
                    self._held.clear()
                if ready or self._wakes or unparked:
                    busy_at = now
                elif now - busy_at >= EMPTY_FOR and not self._held:
                    self._epoll = None  # the next park starts another
                    self._disarmed.clear()
                    epoll.close()
                    return
            _call_all(unparked)
            if ready:
                _call_all(self._woken(ready))
            # No reference to a connection while waiting: it may be garbage.
            del unparked

    def _woken(self, ready: list[tuple[int, int]]) -> list[Callable[[], None] | None]:
        """The ``woken`` of the sockets ``ready``: no longer parked (each
        stays in the epoll, its one event spent)."""
        with self._lock:
            self._disarmed.update(fd for fd, _ in ready)
            return [self._wakes.pop(fd, None) for fd, _ in ready]

    def _dispatch(self, job: Callable[[], None]) -> None:
        """Give ``job`` to a waiting worker, or to a new one."""
        with self._work:
            self._jobs.append(job)
            if self._waiting >= len(self._jobs):
                self._work.notify()
                return
            self._workers += 1
        name = "flask-sockets-channels reader"
        try:
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        except RuntimeError:  # at the thread limit: a busy worker takes it later
            with self._work:
                self._workers -= 1
                orphan = self._jobs.pop() if self._workers == 0 and self._jobs else None
            if orphan is not None:
                orphan()  # no worker at all: the poller reads on itself

    def _serve(self) -> None:
        """A worker: run woken connections' ``read_on`` until none comes for
        ``WORKER_IDLE`` seconds."""
        work = self._work
        while True:
            with work:
                while not self._jobs:
                    self._waiting += 1
                    try:
                        woken = work.wait(WORKER_IDLE)
                    finally:
                        self._waiting -= 1
                    if not woken and not self._jobs:
                        self._workers -= 1
                        return
                job = self._jobs.popleft()
            job()
            del job  # a finished connection is garbage while this waits

    def _forget(self) -> None:
        """In a forked child: the parent's sockets, epoll and workers are
        not ours."""
        self._lock = threading.Lock()
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.close()
        self._epoll = None
        self._wakes = {}
        self._held = {}
        self._disarmed = set()
        self._work = threading.Condition(threading.Lock())
        self._jobs = collections.deque()
        self._waiting = 0
        self._workers = 0


def _call_all(wakes: Iterable[Callable[[], None] | None]) -> None:
    """Call parked sockets' ``woken`` in the poller's thread: a bug there
    is logged, and must not end the poller, which every parked socket needs."""
    for woken in wakes:
        if woken is None:
            continue
        try:
            woken()
        except Exception:
            logging.getLogger("flask_sockets_channels").exception("parked socket's wake-up failed")


#: The process's poller.
lot = ParkingLot()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lot._forget)
