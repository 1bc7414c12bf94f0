"""``receiver``: the channel a view gets messages from, and may read into.

With parking (``idle_reader_timeout``), no thread reads a connection while
its view waits: a ``get`` about to wait first reads the socket in the view's
own thread for a moment (``ViewReading.read``). If nothing comes, the socket
is parked with the process's poller *for the view*: at its next input the
poller wakes this ``get`` (:meth:`Receiver.wake_view`), which reads it
itself, instead of handing it to a worker thread. So a message reaches a
waiting view through one thread switch at most, as with a reader thread of
its own, and an idle connection holds no thread but the view's. A ``get``
that ends otherwise (an item, ``close``, its timeout) hands a socket it was
woken for to a worker, which reads on as before.

The first message a ``get`` reads itself is handed to it directly
(:meth:`Receiver.keep_for_view`), not put on the channel and taken back:
on a round trip, that was a fifth of the library's own time per message.
"""

from __future__ import annotations

import queue
import time
import typing
from typing import Any

from .channels import Channel, Closed

__all__ = ["Receiver", "ViewReading"]

#: ``Receiver._handed`` while no message is handed to the reading ``get``.
_NOTHING: Any = object()


class ViewReading(typing.Protocol):
    """What ``receiver`` asks of its connection while a ``get`` waits."""

    def flush(self) -> None:
        """Write what ``sender`` holds back: the view has no answer coming."""

    def read(self, deadline: float | None, owned: bool) -> bool:
        """Read the socket in this thread for a moment (claiming it from the
        poller first unless ``owned``: the poller woke this ``get`` for it).
        Return True when nothing came and the socket is this thread's, to be
        parked for the view; else it is held, parked or read by a worker."""

    def park(self) -> bool:
        """Park the socket; the poller calls :meth:`Receiver.wake_view` at
        its next input. False if it cannot be parked."""

    def hand_over(self) -> None:
        """Have a worker read the socket now (nobody else will)."""


class Receiver(Channel[Any]):
    """``receiver``: a :class:`Channel` whose blocking ``get`` reads the
    connection's parked socket in the caller's thread (see the module)."""

    def __init__(self, maxsize: int, reading: ViewReading) -> None:
        super().__init__(maxsize)
        self._reading = reading
        # Locked: a get parked the socket for itself, and the poller has
        # not woken it yet; the poller woke it (input waits).
        self._view_parked = False
        self._input = False
        # The message the reading get read for itself (keep_for_view); only
        # that get's thread, which holds the socket, touches it.
        self._handed: Any = _NOTHING

    def get_many(
        self, max_items: int | None = None, block: bool = True, timeout: float | None = None
    ) -> list[Any]:
        """As :meth:`Channel.get_many`; a blocking one reads the socket while
        it waits, if the connection's socket is parked."""
        if not block:
            return super().get_many(max_items, False)
        deadline = None if timeout is None else time.monotonic() + timeout
        reading = self._reading
        owned = False
        while True:
            park = False
            if owned or not self.queue:
                reading.flush()
                park = reading.read(deadline, owned)
                if self._handed is not _NOTHING:
                    return self._take_handed(max_items)
            with self.mutex:
                if park:
                    self._view_parked = reading.park()
                    if not self._view_parked:
                        reading.hand_over()
                self._waiting_getters += 1
                try:
                    self._wait(self.not_empty, self._item_or_input, True, deadline, queue.Empty)
                except queue.Empty:
                    if self._woken():
                        reading.hand_over()
                    raise
                finally:
                    self._waiting_getters -= 1
                woken = self._woken()
                if woken and not self.queue and not self._closed:
                    owned = True  # read it now, in this thread
                    continue
                if woken:
                    reading.hand_over()
                if not self.queue:
                    raise Closed("get on a closed, empty channel")
                count = len(self.queue) if max_items is None else min(max_items, len(self.queue))
                return self._take(count)

    @property
    def has_items(self) -> bool:
        """Whether a message waits: on the channel, or handed to the
        reading ``get``."""
        return bool(self.queue) or self._handed is not _NOTHING

    def keep_for_view(self, items: list[Any]) -> list[Any]:
        """In the thread of a ``get`` that reads the socket itself: keep the
        first of ``items`` for that ``get``, if the channel is open and no
        message waits before it; return the rest, to put on the channel."""
        if self.queue or self._closed or self._handed is not _NOTHING:
            return items
        self._handed = items[0]
        return items[1:]

    def _take_handed(self, max_items: int | None) -> list[Any]:
        """The message handed to this ``get``, and as many as ``max_items``
        allows of those put on the channel after it."""
        items = [self._handed]
        self._handed = _NOTHING
        with self.mutex:
            self.unfinished_tasks += 1  # as a put would: task_done and join still add up
            waiting = len(self.queue)
            if waiting and max_items != 1:
                items += self._take(waiting if max_items is None else min(max_items - 1, waiting))
        return items

    def wake_view(self) -> bool:
        """In the poller's thread, at the socket's input: wake the ``get``
        that parked it for itself. False if none waits for it (the caller
        hands the socket to a worker)."""
        with self.mutex:
            if not self._view_parked:
                return False
            self._view_parked = False
            self._input = True
            self._notify("not_empty")
            return True

    def _item_or_input(self) -> bool:
        return bool(self.queue) or self._input

    def _woken(self) -> bool:
        """Locked, as a ``get`` stops waiting: whether the poller woke it
        for input (the socket is then this thread's to read or hand over)."""
        woken = self._input
        self._input = self._view_parked = False
        return woken
